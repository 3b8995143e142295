--[[
  set_and_register: store entries and register them in their scope's registry, atomically, so an
  entry is never stored unregistered and a clear can never miss it. Also prunes the registry by
  sampling: a few random members whose key has expired are removed, as Redis's own active expiry
  samples keys, so a registry stays within a small factor of its live entries. Only members the
  write added can grow a registry, so the sample is ARGV[2] per member added: with 2, removals
  keep pace with additions while at most half the members are dead, and a write that only
  replaces registered keys (SADD adds nothing) samples nothing.

  KEYS[1]        the scope's registry (a Set): <prefix>registry:tenant:<companyId> or
                 <prefix>registry:global
  KEYS[2..n+1]   the n entry keys to store
  ARGV[1]        TTL in milliseconds; "0" stores without expiry
  ARGV[2]        how many random registry members to sample per member added ("0": no pruning)
  ARGV[3..n+2]   the n values (JSON text), in the order of KEYS[2..n+1]

  Returns: the number of entries stored.
]]
local registry = KEYS[1]
-- ARGV[1] goes to SET as the text it came as: a Lua number would be formatted back into text on
-- every call, which costs more than the rest of the script's own work.
local ttl = ARGV[1]

for i = 2, #KEYS do
  if ttl ~= "0" then
    redis.call("SET", KEYS[i], ARGV[i + 1], "PX", ttl)
  else
    redis.call("SET", KEYS[i], ARGV[i + 1])
  end
end
local added = redis.call("SADD", registry, unpack(KEYS, 2))

if added > 0 and ARGV[2] ~= "0" then
  local members = redis.call("SRANDMEMBER", registry, tonumber(ARGV[2]) * added)
  -- One EXISTS over the whole sample settles the common case (all alive; SRANDMEMBER with a
  -- positive count returns distinct members); only a sample with dead members is walked.
  if #members > 0 and redis.call("EXISTS", unpack(members)) < #members then
    local dead = {}
    for _, member in ipairs(members) do
      if redis.call("EXISTS", member) == 0 then
        dead[#dead + 1] = member
      end
    end
    redis.call("SREM", registry, unpack(dead))
  end
end

return #KEYS - 1
