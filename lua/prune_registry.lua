--[[
  prune_registry: remove, from one page of a registry, the members whose key no longer exists
  (expired or evicted). The client walks the whole registry page by page with the cursor, so no
  single call blocks the server for long.

  KEYS[1]  the registry (a Set) to prune
  ARGV[1]  the SSCAN cursor ("0" to start)
  ARGV[2]  the SSCAN COUNT hint: roughly how many members to look at in this call
  ARGV[3]  "1" in a cluster: a member without the registry's hash tag (a key of another slot,
           which a script may not touch) is removed without being looked up. "0" (or absent)
           standalone

  Returns: { next cursor ("0" when the walk is done), members removed in this call }
]]
local registry = KEYS[1]
if redis.call("TYPE", registry).ok ~= "set" then
  return { "0", 0 }
end

-- The hash tag as the cluster reads it: from the first "{" to the first "}" after it.
local function hash_tag(key)
  local open = string.find(key, "{", 1, true)
  if open then
    local close = string.find(key, "}", open + 1, true)
    if close and close > open + 1 then
      return string.sub(key, open + 1, close - 1)
    end
  end
  return nil
end

local clustered = ARGV[3] == "1"
local tag = clustered and hash_tag(registry) or nil
local page = redis.call("SSCAN", registry, ARGV[1], "COUNT", tonumber(ARGV[2]))
local removed = 0
for _, member in ipairs(page[2]) do
  if (clustered and (tag == nil or hash_tag(member) ~= tag)) or
      redis.call("EXISTS", member) == 0 then
    removed = removed + redis.call("SREM", registry, member)
  end
end
return { page[1], removed }
