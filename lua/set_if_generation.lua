--[[
  set_if_generation: the write of getOrSet. Stores one entry and registers it (as
  set_and_register does) only if neither the scope's generation counter nor the clear-all epoch
  moved since the caller read them, before its compute() started: a clear increments them, so a
  value computed from data read before a clear is never stored after it. Releases the caller's
  lock (only if the caller still owns it) whatever the outcome.

  KEYS[1]  the scope's registry (a Set): <prefix>registry:tenant:<companyId> or
           <prefix>registry:global
  KEYS[2]  the entry key
  KEYS[3]  the scope's generation counter: <prefix>generation:tenant:<companyId> or
           <prefix>generation:global
  KEYS[4]  the clear-all epoch: <prefix>generation:all
  KEYS[5]  the entry's lock: <prefix>lock:<entry key without prefix>
  KEYS[6]  (a tagged entry only) the scope's tag index: <prefix>tags:<scope>
  KEYS[7..] (a tagged entry only) its tag sets: <prefix>tag:<scope>:<digest>, each of which
           the entry joins, as set_and_register_tags does; an untagged entry passes 5 keys
  ARGV[1]  TTL in milliseconds; "0" stores without expiry
  ARGV[2]  how many random registry members to sample if the key was not registered yet ("0": no
           pruning)
  ARGV[3]  the value (JSON text)
  ARGV[4]  the scope generation the caller read (read_or_lock's reply)
  ARGV[5]  the clear-all epoch the caller read (read_or_lock's reply)
  ARGV[6]  the caller's lock owner token; "" when it holds no lock

  Returns: 1 when stored, 0 when refused because a clear ran since the generations were read (or
  a counter expired or was evicted meanwhile, which is refused too, to be safe).
]]
if ARGV[6] ~= "" and redis.call("GET", KEYS[5]) == ARGV[6] then
  redis.call("DEL", KEYS[5])
end

if redis.call("GET", KEYS[3]) ~= ARGV[4] or redis.call("GET", KEYS[4]) ~= ARGV[5] then
  return 0
end

local registry = KEYS[1]
-- The TTL goes to SET as the text it came as (see set_and_register.lua).
local ttl = ARGV[1]
local sample = tonumber(ARGV[2])
if ttl ~= "0" then
  redis.call("SET", KEYS[2], ARGV[3], "PX", ttl)
else
  redis.call("SET", KEYS[2], ARGV[3])
end
local added = redis.call("SADD", registry, KEYS[2])

-- The same sampling prune as set_and_register.lua (scripts are loaded as their files stand, so
-- there is no include): drop a few random members whose key has expired, when this write grew
-- the registry.
if added == 1 and sample > 0 then
  local members = redis.call("SRANDMEMBER", registry, sample)
  for _, member in ipairs(members) do
    if redis.call("EXISTS", member) == 0 then
      redis.call("SREM", registry, member)
    end
  end
end

if #KEYS > 5 then
  for i = 7, #KEYS do
    if redis.call("SADD", KEYS[i], KEYS[2]) == 1 and sample > 0 then
      local members = redis.call("SRANDMEMBER", KEYS[i], sample)
      for _, member in ipairs(members) do
        if redis.call("EXISTS", member) == 0 then
          redis.call("SREM", KEYS[i], member)
        end
      end
    end
  end
  redis.call("SADD", KEYS[6], unpack(KEYS, 7))
end

return 1
