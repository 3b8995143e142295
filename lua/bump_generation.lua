--[[
  bump_generation: increment generation counters that exist, so a getOrSet whose compute() read
  them before now can no longer store its value. clearAll bumps the clear-all epoch with it before
  it looks for registries, so even a tenant that has no registry yet is invalidated. A counter that
  does not exist is left alone: no getOrSet is relying on it (read_or_lock creates it first).

  KEYS[1..n]  the generation counters: <prefix>generation:all, ...

  Returns: how many counters were incremented.
]]
local bumped = 0
for _, key in ipairs(KEYS) do
  if redis.call("EXISTS", key) == 1 then
    redis.call("INCR", key)
    bumped = bumped + 1
  end
end
return bumped
