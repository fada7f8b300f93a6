-- Publish the OrderPlaced of a reservation taken on the SQL path, once, and
-- leave its marker so a retry of the order on Redis is answered "already reserved".
--
-- KEYS[1] reservation marker   KEYS[2] order events stream
-- ARGV[1] order id   ARGV[2] marker ("sql|<lines>")   ARGV[3] marker TTL   ARGV[4] envelope
--
-- Replies: 'OK' published now | 'SEEN' published before |
-- 'DUP' reserve.lua reserved this order too (a reply lost as Redis failed, or a
-- retry that reached Redis first): the SQL copy must be undone, not published.
local existing = redis.call('GET', KEYS[1])
if existing then
  if string.sub(existing, 1, 4) == 'sql|' then
    return 'SEEN'
  end
  return 'DUP'
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'type', 'OrderPlaced', 'order_id', ARGV[1], 'event', ARGV[4])
return 'OK'
