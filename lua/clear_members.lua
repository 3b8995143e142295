--[[
  clear_members: the cluster form of clear_registry. Deletes one batch of a registry's entries that
  the client read with SRANDMEMBER, each declared as a key, so the cluster checks that every key
  the script touches is in the registry's slot and on this node: while the slot migrates, the
  call is redirected (ASK) or retried (TRYAGAIN) instead of missing a key that has already moved.
  A member is deleted only if it is still in the registry, so a clear racing another clear counts
  each key once. The client loops until the registry is empty.

  KEYS[1]       the registry (a Set) of one scope bucket: <prefix>registry:tenant:{<tag>}... or
                <prefix>registry:global:{g<bucket>}
  KEYS[2..n+1]  n members of the registry (entry keys of the same hash tag)
  ARGV[1]       the key prefix every member must start with; a member outside it is dropped from
                the registry but its key is left alone, so a clear never touches a key outside
                the prefix

  Returns: how many keys were deleted (members that were still registered and whose key still
  existed). Nothing is read after the deletions: the SREM of the last member removes the registry
  itself, and while the slot migrates, touching a key that no longer exists here is an error.
]]
local registry = KEYS[1]
local prefix = ARGV[1]
local deleted = 0
for i = 2, #KEYS do
  local member = KEYS[i]
  if redis.call("SREM", registry, member) == 1 and string.sub(member, 1, #prefix) == prefix then
    deleted = deleted + redis.call("UNLINK", member)
  end
end
return deleted
