-- Add or renew the lease of one running job execution; times are the Redis server's clock.
--
-- KEYS[1]  rq_signals:leases:<queue>   sorted set; member "<job_id>:<execution_id>" (as in rq's
--                                        started registry), score = lease expiry, float seconds
-- KEYS[2]  rq_signals:claim:<member>   string; present while (or after) another worker recovers it
-- ARGV[1]  member
-- ARGV[2]  lease length, float seconds
-- ARGV[3]  "add" (the job is starting) or "renew" (its worker is still alive)
--
-- Returns 1 when the lease now runs until now + ARGV[2]; 0 when there is no lease to renew (the job
-- ended and its execution was cleaned up); -1 when another worker has claimed it for recovery.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = now + tonumber(ARGV[2])
if ARGV[3] == 'add' then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[1])
return 1
