--[[
  clear_registry: delete one bounded batch of a registry's entries. The client calls it in a loop
  until nothing remains, so no single call blocks the server for long, whatever the tenant's
  size. SPOP removes the members from the registry as their keys are unlinked, so a member is
  never left pointing at a deleted key; when the last member goes, Redis removes the Set itself.
  Every call first increments the scope's generation counter when it exists (read_or_lock
  creates it; it never exists for a cache that does not use getOrSet), even when the registry is
  empty or missing, atomically with the deletions, so a getOrSet whose compute() started before
  the clear can no longer store its value (set_if_generation refuses it).

  KEYS[1]  the registry (a Set) to clear
  KEYS[2]  the scope's generation counter: <prefix>generation:<the registry key's part after
           <prefix>registry:>, i.e. <prefix>generation:tenant:<companyId> or
           <prefix>generation:global
  ARGV[1]  the batch size: how many members to pop and unlink in this call
  ARGV[2]  the key prefix every member must start with; a member outside it (a foreign key
           added to the registry by hand or by another program) is dropped from the registry
           but its key is left alone, so a clear never touches a key outside the prefix

  Returns: { keys deleted in this batch (those that still existed), members left in the registry }
]]
local registry = KEYS[1]
if redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("INCR", KEYS[2])
end
if redis.call("TYPE", registry).ok ~= "set" then
  return { 0, 0 }
end

local prefix = ARGV[2]
local popped = redis.call("SPOP", registry, tonumber(ARGV[1]))
local members = {}
for _, member in ipairs(popped) do
  if string.sub(member, 1, #prefix) == prefix then
    members[#members + 1] = member
  end
end
local deleted = 0
if #members > 0 then
  deleted = redis.call("UNLINK", unpack(members))
end
return { deleted, redis.call("SCARD", registry) }
