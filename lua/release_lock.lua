--[[
  release_lock: delete a getOrSet lock only if the caller still owns it, so a caller whose lock
  expired (its compute() ran past the lock time-out) never deletes the lock another caller took
  since.

  KEYS[1]  the entry's lock: <prefix>lock:<entry key without prefix>
  ARGV[1]  the caller's lock owner token

  Returns: 1 when the lock was released, 0 when it was gone or owned by someone else.
]]
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
