--[[
  invalidate_tag: delete one bounded batch of the entries listed in a tag's set (a single server;
  the cluster form is invalidate_members). The client calls it in a loop until the tag set is
  gone, so no single call blocks the server for long, whatever the tag's size. SPOP takes the
  members out of the tag set as their keys are unlinked; each is also removed from the scope's
  registry. An entry that carried several tags is deleted by the first tag that lists it; the
  others find its key gone and do not count it again. Every call first increments the scope's
  generation counter when it exists, as clear_registry does, so a getOrSet whose compute()
  started before the invalidation can no longer store its value (set_if_generation refuses it).

  KEYS[1]  the tag set: <prefix>tag:<scope>:<digest>
  KEYS[2]  the scope's registry: <prefix>registry:tenant:<companyId> or <prefix>registry:global
  KEYS[3]  the scope's generation counter: <prefix>generation:tenant:<companyId> or
           <prefix>generation:global
  KEYS[4]  the scope's tag index: <prefix>tags:<scope>; the tag set leaves it once it is empty
  ARGV[1]  the batch size: how many members to pop and unlink in this call
  ARGV[2]  the key prefix every member must start with; a member outside it is dropped from the
           tag set but its key is left alone, so an invalidation never touches a key outside the
           prefix

  Returns: { keys deleted in this batch (those that still existed), members left in the tag set }
]]
if redis.call("EXISTS", KEYS[3]) == 1 then
  redis.call("INCR", KEYS[3])
end
if redis.call("TYPE", KEYS[1]).ok ~= "set" then
  redis.call("SREM", KEYS[4], KEYS[1])
  return { 0, 0 }
end

local prefix = ARGV[2]
local popped = redis.call("SPOP", KEYS[1], tonumber(ARGV[1]))
local members = {}
for _, member in ipairs(popped) do
  if string.sub(member, 1, #prefix) == prefix then
    members[#members + 1] = member
  end
end
local deleted = 0
if #members > 0 then
  redis.call("SREM", KEYS[2], unpack(members))
  deleted = redis.call("UNLINK", unpack(members))
end
local left = redis.call("SCARD", KEYS[1])
if left == 0 then
  redis.call("SREM", KEYS[4], KEYS[1])
end
return { deleted, left }
