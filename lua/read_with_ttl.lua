--[[
  read_with_ttl: read entries together with their remaining time to live, for the near cache,
  whose local copy of an entry must never outlive the entry on the server. One call answers a
  read batch whole (GET and PTTL of each key, with nothing run between them), instead of two
  commands per key; an absent key costs its GET alone.

  KEYS[1..n]  the entry keys to read (one hash slot in a cluster)

  Returns: a flat array of 2n items: for each key, in KEYS order, its value (nil when absent) and
  its PTTL in milliseconds (-1: no expiry, -2: absent).
]]
local out = {}
for i = 1, #KEYS do
  local value = redis.call("GET", KEYS[i])
  out[2 * i - 1] = value
  if value then
    out[2 * i] = redis.call("PTTL", KEYS[i])
  else
    out[2 * i] = -2
  end
end
return out
