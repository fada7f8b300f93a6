-- Give back what one order reserved on Redis, once.
--
-- KEYS[1] epoch of this Redis   KEYS[2] reservation marker   KEYS[3] release marker
-- KEYS[4] stock journal stream
-- ARGV[1] order id   ARGV[2] marker TTL in seconds   ARGV[3] counter key prefix ("<p>:stock:")
--
-- Replies: 'OK' released now | 'DONE' released before | 'NONE' no marker here |
-- 'SQL' reserved on the SQL path (released there) | 'STALE' reserved in a dead epoch.
-- The counters come from the marker itself, so only what this order reserved
-- is returned (single Redis; a Cluster needs hash-tagged keys).
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'DONE'
end
local marker = redis.call('GET', KEYS[2])
if not marker then
  return 'NONE'
end
local source, lines = string.match(marker, '^([^|]*)|(.*)$')
if source == 'sql' then
  return 'SQL'
end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
if source ~= redis.call('GET', KEYS[1]) then
  -- Its counters belong to a Redis that was lost: those units are stranded in
  -- SQL, and an operator reclaims them; adding them here would sell them twice.
  return 'STALE'
end
for pid, qty in string.gmatch(lines, '([^=,]+)=(%d+)') do
  local after = redis.call('INCRBY', ARGV[3] .. source .. ':' .. pid, qty)
  redis.call('XADD', KEYS[4], '*', 'product_id', pid, 'delta', qty,
             'reason', 'release', 'order_id', ARGV[1], 'after', after)
end
return 'OK'
