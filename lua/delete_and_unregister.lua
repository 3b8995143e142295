--[[
  delete_and_unregister: delete one entry and remove it from its scope's registry, atomically.

  KEYS[1]  the entry key
  KEYS[2]  the scope's registry (a Set)

  Returns: 1 when the entry existed and was deleted, 0 otherwise.
]]
local deleted = redis.call("DEL", KEYS[1])
redis.call("SREM", KEYS[2], KEYS[1])
return deleted
