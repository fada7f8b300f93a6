-- Give back what one order reserved, once.
--
-- KEYS[1] reservation marker   KEYS[2] release marker   KEYS[3] stock journal stream
-- ARGV[1] order id   ARGV[2] marker TTL in seconds   ARGV[3] stock key prefix
--
-- Reply: 1 released now; 0 nothing reserved, or released before.
-- The stock keys come from the reservation marker itself, so only what this
-- order reserved is returned (single Redis; a Cluster needs hash-tagged keys).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local lines = redis.call('GET', KEYS[1])
if not lines then
  return 0
end
lines = string.gsub(lines, '^sql:', '')  -- a marker copied from a SQL-path reservation
for pid, qty in string.gmatch(lines, '([^=,]+)=(%d+)') do
  local after = redis.call('INCRBY', ARGV[3] .. pid, qty)
  redis.call('XADD', KEYS[3], '*', 'product_id', pid, 'delta', qty,
             'reason', 'release', 'order_id', ARGV[1], 'after', after)
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
