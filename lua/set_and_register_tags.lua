--[[
  set_and_register_tags: set_and_register for a tagged write. Stores entries and registers them in
  their scope's registry and in each tag's set, and each tag set in the scope's tag index, in one
  atomic call, so a tagged entry is never stored without being findable by its tags or by a
  clear. Untagged writes keep set_and_register, which this script leaves untouched. Every set it
  adds members to is pruned by sampling, as set_and_register prunes the registry: ARGV[2] random
  members per member added, dropped when their key is gone (an expired entry, an invalidated tag
  set). Tagged entries stay plain members of the registry, so the Python original still reads
  and clears them.

  KEYS[1]              the scope's registry (a Set): <prefix>registry:tenant:<companyId> or
                       <prefix>registry:global
  KEYS[2]              the scope's tag index (a Set of tag set keys): <prefix>tags:<scope>
  KEYS[3..t+2]         the t tag sets: <prefix>tag:<scope>:<sha256 of "tag:" .. tag>
  KEYS[t+3..t+n+2]     the n entry keys to store
  ARGV[1]              TTL in milliseconds; "0" stores without expiry
  ARGV[2]              how many random members to sample per member added ("0": no pruning)
  ARGV[3]              t, the number of tag sets
  ARGV[4..n+3]         the n values (JSON text), in the order of the entry keys

  Returns: the number of entries stored.
]]
local ttl = ARGV[1]
local sample = tonumber(ARGV[2])
local first = tonumber(ARGV[3]) + 3

for i = first, #KEYS do
  if ttl ~= "0" then
    redis.call("SET", KEYS[i], ARGV[i - first + 4], "PX", ttl)
  else
    redis.call("SET", KEYS[i], ARGV[i - first + 4])
  end
end

-- The sampling prune of set_and_register.lua (scripts are loaded as their files stand, so there
-- is no include).
local function prune(set, added)
  if added == 0 or sample == 0 then
    return
  end
  local members = redis.call("SRANDMEMBER", set, sample * added)
  if #members > 0 and redis.call("EXISTS", unpack(members)) < #members then
    local dead = {}
    for _, member in ipairs(members) do
      if redis.call("EXISTS", member) == 0 then
        dead[#dead + 1] = member
      end
    end
    redis.call("SREM", set, unpack(dead))
  end
end

prune(KEYS[1], redis.call("SADD", KEYS[1], unpack(KEYS, first)))
-- A tag set that gained no member already held these keys, so it existed, and a tag set that
-- exists is listed in the index (it joins the index in the call that creates it and leaves it
-- only once empty): only the tag sets that grew are added to the index again.
local grown = {}
for t = 3, first - 1 do
  local added = redis.call("SADD", KEYS[t], unpack(KEYS, first))
  if added > 0 then
    grown[#grown + 1] = KEYS[t]
    prune(KEYS[t], added)
  end
end
if #grown > 0 then
  prune(KEYS[2], redis.call("SADD", KEYS[2], unpack(grown)))
end

return #KEYS - first + 1
