--[[
  count_live_members: count, in one page of a registry, the members whose key still exists (not
  expired, evicted or deleted). Read-only. The client walks the whole registry page by page with
  the cursor, so no single call blocks the server for long; the admin CLI's `stats` uses it.

  KEYS[1]  the registry (a Set) to count
  ARGV[1]  the SSCAN cursor ("0" to start)
  ARGV[2]  the SSCAN COUNT hint: roughly how many members to look at in this call

  Returns: { next cursor ("0" when the walk is done), members of this page whose key exists }
]]
local registry = KEYS[1]
if redis.call("TYPE", registry).ok ~= "set" then
  return { "0", 0 }
end

local page = redis.call("SSCAN", registry, ARGV[1], "COUNT", tonumber(ARGV[2]))
local live = 0
for _, member in ipairs(page[2]) do
  live = live + redis.call("EXISTS", member)
end
return { page[1], live }
