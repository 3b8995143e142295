--[[
  invalidate_members: the cluster form of invalidate_tag. Deletes one batch of a tag set's entries
  that the client read with SRANDMEMBER, each declared as a key, so the cluster checks that every
  key the script touches is in the tag set's slot and on this node (see clear_members.lua). A
  member is deleted only if it is still in the tag set, so two invalidations racing count each key
  once, and an entry already deleted through another tag is not counted again. The client bumps
  the bucket's generation counter (bump_generation) before the first batch and loops until the
  tag set is empty.

  KEYS[1]       the tag set of one scope bucket: <prefix>tag:tenant:{<tag>}...:<digest> or
                <prefix>tag:global:{g<bucket>}:<digest>
  KEYS[2]       the bucket's registry (the same hash tag)
  KEYS[3..n+2]  n members of the tag set (entry keys of the same hash tag)
  ARGV[1]       the key prefix every member must start with; a member outside it is dropped from
                the tag set but its key is left alone

  Returns: how many keys were deleted.
]]
local prefix = ARGV[1]
local deleted = 0
for i = 3, #KEYS do
  local member = KEYS[i]
  if redis.call("SREM", KEYS[1], member) == 1 and string.sub(member, 1, #prefix) == prefix then
    redis.call("SREM", KEYS[2], member)
    deleted = deleted + redis.call("UNLINK", member)
  end
end
return deleted
