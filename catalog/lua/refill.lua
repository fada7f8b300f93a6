-- Add units that SQL allocated to Redis to their counters, exactly once per refill.
--
-- KEYS[1] epoch of this Redis   KEYS[2] refill marker   KEYS[2+i] counter of product i
-- ARGV[1] epoch the refill was allocated in   ARGV[2] marker TTL in seconds
-- ARGV[2+i] units for product i
--
-- Replies: 'OK' added now | 'DONE' added before | 'EPOCH' this Redis is in another epoch
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'EPOCH'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'DONE'
end
for i = 3, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[i])
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 'OK'
