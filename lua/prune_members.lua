--[[
  prune_members: the cluster form of prune_registry (and of set_and_register's sampling). Removes,
  from a registry, the given members whose key no longer exists (expired or evicted). The client
  reads the members (SSCAN for a full prune, SRANDMEMBER for a sample) and declares each as a key,
  so the cluster runs the check where every key lives: while the slot migrates, the call is
  redirected or retried rather than taking a key that has not arrived yet for a dead one.

  KEYS[1]       the registry (a Set) of one scope bucket
  KEYS[2..n+1]  n members of the registry to check (entry keys of the same hash tag)

  Returns: how many members were removed.
]]
local registry = KEYS[1]
local removed = 0
for i = 2, #KEYS do
  if redis.call("EXISTS", KEYS[i]) == 0 then
    removed = removed + redis.call("SREM", registry, KEYS[i])
  end
end
return removed
