--[[
  prune_registry: remove, from one page of a registry, the members whose key no longer exists
  (expired or evicted). The client walks the whole registry page by page with the cursor, so no
  single call blocks the server for long.

  KEYS[1]  the registry (a Set) to prune
  ARGV[1]  the SSCAN cursor ("0" to start)
  ARGV[2]  the SSCAN COUNT hint: roughly how many members to look at in this call

  Returns: { next cursor ("0" when the walk is done), members removed in this call }
]]
local registry = KEYS[1]
if redis.call("TYPE", registry).ok ~= "set" then
  return { "0", 0 }
end

local page = redis.call("SSCAN", registry, ARGV[1], "COUNT", tonumber(ARGV[2]))
local removed = 0
for _, member in ipairs(page[2]) do
  if redis.call("EXISTS", member) == 0 then
    removed = removed + redis.call("SREM", registry, member)
  end
end
return { page[1], removed }
