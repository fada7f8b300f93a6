-- Reserve every line of one order, atomically, or nothing.
--
-- KEYS[1]   reservation marker of the order (idempotency key)
-- KEYS[2]   stock journal stream (write-behind to SQL)
-- KEYS[3]   order events stream (the outbox the order context consumes)
-- KEYS[3+i] stock counter of line i
-- ARGV[1]   order id          ARGV[2] marker TTL in seconds
-- ARGV[3]   OrderPlaced envelope (serialized protobuf)
-- ARGV[2+2i], ARGV[3+2i]      product id and quantity of line i
--
-- Replies: {'OK'} | {'DUP', lines} | {'MISSING', pid...} | {'SHORT', pid, requested, available, ...}
local marker = KEYS[1]
local existing = redis.call('GET', marker)
if existing then
  return {'DUP', existing}
end

-- Sum the lines per product: two lines of one product are checked as one.
local keys, pids, totals = {}, {}, {}
for i = 1, #KEYS - 3 do
  local key = KEYS[3 + i]
  local qty = tonumber(ARGV[3 + 2 * i])
  if qty == nil or qty <= 0 then
    return redis.error_reply('bad quantity for ' .. ARGV[2 + 2 * i])
  end
  if totals[key] == nil then
    keys[#keys + 1] = key
    pids[key] = ARGV[2 + 2 * i]
    totals[key] = 0
  end
  totals[key] = totals[key] + qty
end

local missing, short, stock = {'MISSING'}, {'SHORT'}, {}
for _, key in ipairs(keys) do
  local value = redis.call('GET', key)
  if not value then
    missing[#missing + 1] = pids[key]
  else
    stock[key] = tonumber(value)
    if stock[key] < totals[key] then
      short[#short + 1] = pids[key]
      short[#short + 1] = totals[key]
      short[#short + 1] = stock[key]
    end
  end
end
if #missing > 1 then return missing end
if #short > 1 then return short end

local lines = {}
for _, key in ipairs(keys) do
  local after = redis.call('DECRBY', key, totals[key])
  redis.call('XADD', KEYS[2], '*', 'product_id', pids[key], 'delta', -totals[key],
             'reason', 'reserve', 'order_id', ARGV[1], 'after', after)
  lines[#lines + 1] = pids[key] .. '=' .. totals[key]
end
redis.call('XADD', KEYS[3], '*', 'type', 'OrderPlaced', 'order_id', ARGV[1], 'event', ARGV[3])
redis.call('SET', marker, table.concat(lines, ','), 'EX', ARGV[2])
return {'OK'}
