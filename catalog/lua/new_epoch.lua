-- Point this Redis at a new epoch, and move the old epoch's journal aside in
-- the same step: a flusher never reads an old entry under the new epoch.
--
-- KEYS[1] epoch key   KEYS[2] stock journal stream   KEYS[3] where the old journal goes
-- ARGV[1] the new epoch
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[3])
end
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
