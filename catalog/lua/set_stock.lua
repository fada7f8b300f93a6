-- Operator action: set one product's stock to an absolute value, journaled.
--
-- KEYS[1] stock counter   KEYS[2] stock journal stream
-- ARGV[1] product id      ARGV[2] new stock (>= 0)
--
-- Reply: {'OK', old} | {'MISSING'} (the counter must be loaded first)
local old = redis.call('GET', KEYS[1])
if not old then
  return {'MISSING'}
end
local delta = tonumber(ARGV[2]) - tonumber(old)
redis.call('SET', KEYS[1], ARGV[2])
if delta ~= 0 then
  redis.call('XADD', KEYS[2], '*', 'product_id', ARGV[1], 'delta', delta,
             'reason', 'set', 'order_id', '', 'after', ARGV[2])
end
return {'OK', old}
