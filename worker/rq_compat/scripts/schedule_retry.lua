-- Schedule one retry of a job, due `delay` seconds from now on the Redis clock.
--
-- KEYS[1]  rq:scheduled:<queue>        rq's ScheduledJobRegistry: what rq and django-rq show as scheduled
-- KEYS[2]  rq_signals:retries:<queue>  our index of pending retries: same member, same score
-- ARGV[1]  job id
-- ARGV[2]  delay, float seconds >= 0
-- ARGV[3]  pub/sub channel; told "<due time> <queue>" so a promoter sleeping until a later retry wakes
-- ARGV[4]  "1": ours to promote (index it, announce it); "0": leave it to rq's scheduler (rate-limited
--          jobs, which rq's scheduler enqueues through the rate limiter)
-- ARGV[5]  the queue name
--
-- The due time is computed here, from the server's clock, so that every worker, on any machine,
-- compares it with the same clock (promote_retries.lua reads TIME too). Scores are float seconds
-- since the epoch with microseconds; rq itself writes whole seconds, and reads floats fine.
-- Returns the due time, as the string that was stored.

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless told to replicate effects.
if redis.replicate_commands then redis.replicate_commands() end

local now = redis.call('TIME')
local due = string.format('%.6f', tonumber(now[1]) + tonumber(now[2]) / 1000000 + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], due, ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], due, ARGV[1])
  redis.call('PUBLISH', ARGV[3], due .. ' ' .. ARGV[5])
end
return due
