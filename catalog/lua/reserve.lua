-- Reserve every line of one order from Redis's allocation, atomically, or nothing.
--
-- KEYS[1]   epoch of this Redis      KEYS[2] reservation marker (idempotency key)
-- KEYS[3]   release marker           KEYS[4] stock journal stream
-- KEYS[5]   order events stream (the outbox)
-- KEYS[5+i] stock counter of line i (named with the epoch)
-- ARGV[1]   epoch the caller expects ARGV[2] order id   ARGV[3] marker TTL in seconds
-- ARGV[4]   OrderPlaced envelope (serialized protobuf)
-- ARGV[3+2i], ARGV[4+2i]             product id and quantity of line i
--
-- Replies: {'OK', OrderPlaced's entry id} | {'DUP', marker, released '1' or '0'} | {'EPOCH'} |
--          {'SHORT', pid, requested, available, ...}
-- A counter holds only units SQL allocated to Redis; an absent one holds none.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'EPOCH'}
end
local existing = redis.call('GET', KEYS[2])
if existing then
  return {'DUP', existing, tostring(redis.call('EXISTS', KEYS[3]))}
end

-- Sum the lines per product: two lines of one product are checked as one.
local keys, pids, totals = {}, {}, {}
for i = 1, #KEYS - 5 do
  local key = KEYS[5 + i]
  local qty = tonumber(ARGV[4 + 2 * i])
  if qty == nil or qty <= 0 then
    return redis.error_reply('bad quantity for ' .. ARGV[3 + 2 * i])
  end
  if totals[key] == nil then
    keys[#keys + 1] = key
    pids[key] = ARGV[3 + 2 * i]
    totals[key] = 0
  end
  totals[key] = totals[key] + qty
end

local short = {'SHORT'}
for _, key in ipairs(keys) do
  local stock = tonumber(redis.call('GET', key) or '0')
  if stock < totals[key] then
    short[#short + 1] = pids[key]
    short[#short + 1] = totals[key]
    short[#short + 1] = stock
  end
end
if #short > 1 then return short end

local lines = {}
for _, key in ipairs(keys) do
  local after = redis.call('DECRBY', key, totals[key])
  redis.call('XADD', KEYS[4], '*', 'product_id', pids[key], 'delta', -totals[key],
             'reason', 'reserve', 'order_id', ARGV[2], 'after', after)
  lines[#lines + 1] = pids[key] .. '=' .. totals[key]
end
local entry = redis.call('XADD', KEYS[5], '*', 'type', 'OrderPlaced', 'order_id', ARGV[2], 'event', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. table.concat(lines, ','), 'EX', ARGV[3])
return {'OK', entry}
