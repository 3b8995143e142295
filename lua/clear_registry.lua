--[[
  clear_registry: delete one bounded batch of a registry's entries. The client calls it in a loop
  until nothing remains, so no single call blocks the server for long, whatever the tenant's
  size. SPOP removes the members from the registry as their keys are unlinked, so a member is
  never left pointing at a deleted key; when the last member goes, Redis removes the Set itself.

  KEYS[1]  the registry (a Set) to clear
  ARGV[1]  the batch size: how many members to pop and unlink in this call
  ARGV[2]  the key prefix every member must start with; a member outside it (a foreign key
           added to the registry by hand or by another program) is dropped from the registry
           but its key is left alone, so a clear never touches a key outside the prefix
  ARGV[3]  "1" in a cluster: a member must also carry the registry's hash tag (be a key of the
           registry's slot, the only keys a script may touch); any other member is dropped from
           the registry and its key left alone. "0" (or absent) standalone

  Returns: { keys deleted in this batch (those that still existed), members left in the registry }
]]
local registry = KEYS[1]
if redis.call("TYPE", registry).ok ~= "set" then
  return { 0, 0 }
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

local prefix = ARGV[2]
local tag = ARGV[3] == "1" and hash_tag(registry) or nil
local popped = redis.call("SPOP", registry, tonumber(ARGV[1]))
local members = {}
for _, member in ipairs(popped) do
  if string.sub(member, 1, #prefix) == prefix and (ARGV[3] ~= "1" or
      (tag ~= nil and hash_tag(member) == tag)) then
    members[#members + 1] = member
  end
end
local deleted = 0
if #members > 0 then
  deleted = redis.call("UNLINK", unpack(members))
end
return { deleted, redis.call("SCARD", registry) }
