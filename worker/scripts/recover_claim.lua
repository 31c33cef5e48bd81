-- Claim one job execution for recovery, so that exactly one worker handles it.
--
-- KEYS[1]  rq_signals:leases:<queue>   sorted set; member "<job_id>:<execution_id>", score = lease
--                                        expiry (Redis clock, float seconds)
-- KEYS[2]  rq:wip:<queue>              rq's StartedJobRegistry, same members
-- KEYS[3]  rq_signals:claim:<member>   string "<token>" while claimed, "done:<token>" once handled
-- ARGV[1]  member
-- ARGV[2]  claim token (unique per attempt to claim)
-- ARGV[3]  claim length, float seconds: if the claimer dies, the job is claimable again after it
-- ARGV[4]  "expired": claim only if the lease expired more than ARGV[5] seconds ago (its worker is
--          presumed dead, and has stopped its run by then: see worker/fencing.py);
--          "own": the worker holding the lease gives it up (cold shutdown), if nobody claimed it
-- ARGV[5]  fencing margin, float seconds: how long past its expiry a lease must be to be claimed
--
-- Returns 1 if claimed, 0 if not. A lease whose execution is no longer in rq's started registry
-- (rq has finished the job) is dropped. The claim also pushes the lease forward by ARGV[3], so
-- while it is held no other worker sees the job as expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
if ARGV[4] == 'expired' and tonumber(score) + tonumber(ARGV[5] or '0') > now then
  return 0
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', math.floor(tonumber(ARGV[3]) * 1000)) == false then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
