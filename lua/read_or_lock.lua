--[[
  read_or_lock: the server side of getOrSet on a miss, and of every getOrSet read with
  staleWhileRevalidate. Returns the entry when it is fresh; otherwise tries to take the key's lock
  (SET NX PX with the caller's random token), so that one caller across all processes computes,
  and returns the scope's generation counters, which the write (set_if_generation) compares to
  refuse a value computed across a clear. One atomic call: a value stored between a caller's
  missed GET and its lock attempt is returned here, never computed a second time.

  KEYS[1]  the entry key
  KEYS[2]  the entry's lock: <prefix>lock:<entry key without prefix>
  KEYS[3]  the scope's generation counter: <prefix>generation:tenant:<companyId> or
           <prefix>generation:global
  KEYS[4]  the clear-all epoch: <prefix>generation:all
  ARGV[1]  the lock owner token (random, one per getOrSet flow)
  ARGV[2]  the lock time-out in milliseconds (PX)
  ARGV[3]  the stale threshold in milliseconds: an entry with at most this much TTL left is stale
           and served while one caller refreshes it; "0": an existing entry is always fresh
  ARGV[4]  a random integer: the starting value of a generation counter that does not exist yet
           (random, not 0, so a counter evicted or expired after a clear and created again does
           not come back to a value some caller read before that clear)
  ARGV[5]  the generation counters' TTL in milliseconds, renewed here on every call (counters of
           scopes no getOrSet reads any more disappear by themselves)

  Returns: { status, value, scope generation, clear-all epoch }
    status 1  fresh: value is the entry (nothing else is returned)
    status 2  stale, lock taken: value is the stale entry; the caller refreshes it
    status 3  stale, lock held by someone else: value is the stale entry
    status 4  missing, lock taken: value is nil; the caller computes
    status 5  missing, lock held by someone else: value is nil; the caller waits
    The generations are the counters' values after creating any that was missing.
]]
local value = redis.call("GET", KEYS[1])
local threshold = tonumber(ARGV[3])
if value then
  if threshold <= 0 then
    return { 1, value }
  end
  local pttl = redis.call("PTTL", KEYS[1])
  if pttl < 0 or pttl > threshold then
    return { 1, value }
  end
end

-- Times go to the server as the text they came as (see set_and_register.lua): a Lua number would
-- be formatted back into text on every call.
local taken = redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[2])
local status
if value then
  status = taken and 2 or 3
else
  status = taken and 4 or 5
end
local generations = {}
for i = 3, 4 do
  if not redis.call("SET", KEYS[i], ARGV[4], "NX", "PX", ARGV[5]) then
    redis.call("PEXPIRE", KEYS[i], ARGV[5])
  end
  generations[i - 2] = redis.call("GET", KEYS[i])
end
return { status, value, generations[1], generations[2] }
