-- Operator action (SetStock): take units back out of Redis so that its counter
-- holds at most ARGV[3], journaled so SQL's stock and allocation shrink with it.
--
-- KEYS[1] epoch of this Redis   KEYS[2] stock counter   KEYS[3] stock journal stream
-- ARGV[1] epoch the caller expects   ARGV[2] product id   ARGV[3] most the counter may keep
--
-- Reply: {'OK', counter after} | {'EPOCH'}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'EPOCH'}
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local keep = tonumber(ARGV[3])
if counter > keep then
  redis.call('DECRBY', KEYS[2], counter - keep)
  redis.call('XADD', KEYS[3], '*', 'product_id', ARGV[2], 'delta', keep - counter,
             'reason', 'set', 'order_id', '', 'after', keep)
  counter = keep
end
return {'OK', counter}
