--[[
  read_with_ttl: read an entry together with its remaining time to live, for the near cache,
  whose local copy of an entry must never outlive the entry on the server. Used for a read that
  goes out alone (a sequential caller): one command and one reply instead of a GET and a PTTL,
  which cost a caller that does other I/O between reads a second wakeup. Reads gathered in a
  tick go out as one MGET instead, the PTTLs of what they found following (read_ttls.lua).
  An absent key costs its GET alone.

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
