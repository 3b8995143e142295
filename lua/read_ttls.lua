--[[
  read_ttls: the remaining time to live of entries the near cache just read, so that its local
  copy of each never outlives the entry on the server. The values themselves were read by a plain
  GET / MGET on the caller's path; this call follows off that path, once per tick for the keys
  read in it, and a change of a key between the two reaches the near cache as an invalidation,
  which refuses the copy (src/near_tier.ts).

  KEYS[1..n]  the entry keys (one hash slot in a cluster)

  Returns: their PTTLs in milliseconds, in KEYS order (-1: no expiry, -2: absent).
]]
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call("PTTL", KEYS[i])
end
return out
