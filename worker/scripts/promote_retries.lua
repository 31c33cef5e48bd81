-- Move the due retries of some queues from rq's scheduled registry onto their queues, atomically.
--
-- For each queue i = 1..n, three keys:
--   KEYS[3i-2]  rq_signals:retries:<queue>  our index of pending retries, scored by due time
--   KEYS[3i-1]  rq:scheduled:<queue>        rq's ScheduledJobRegistry (same member, same score)
--   KEYS[3i]    rq:queue:<queue>            the list workers pop job ids from
-- ARGV[1]  job hash key prefix, "rq:job:" (job hashes are named from the ids found; not cluster-safe,
--          like rq itself)
-- ARGV[2]  most retries moved per queue in one call (the caller calls again when more are due)
--
-- A retry is due when its score <= TIME. It is pushed only if this call is the one that removed it
-- from rq's registry (ZREM returned 1): several promoters, rq's scheduler, or a user who deleted or
-- enqueued the job by hand can never make it run twice. The job hash gets what rq's enqueue writes
-- (status "queued", enqueued_at, TTL) and the id goes to the back of the queue, or to the front when
-- rq would put it there (enqueue_at_front, or enqueue_at_front_on_retry after a run).
--
-- Returns {moved, next due time or false, server seconds, server microseconds}; times are strings.

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless told to replicate effects.
if redis.replicate_commands then redis.replicate_commands() end

local now = redis.call('TIME')
local sec, usec = tonumber(now[1]), tonumber(now[2])
local now_score = string.format('%.6f', sec + usec / 1000000)
local prefix, limit = ARGV[1], tonumber(ARGV[2])

-- rq's utcformat ("%Y-%m-%dT%H:%M:%S.%fZ"); Redis's Lua has no os.date, so days to civil date by hand
local function utcformat(s, us)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', year, month, day,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, us)
end
local enqueued_at = utcformat(sec, usec)

local moved = 0
local next_due = false
for i = 1, #KEYS, 3 do
  local index, scheduled, queue = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local due = redis.call('ZRANGEBYSCORE', index, '-inf', now_score, 'LIMIT', 0, limit)
  for _, job_id in ipairs(due) do
    redis.call('ZREM', index, job_id)
    if redis.call('ZREM', scheduled, job_id) == 1 then
      local job_key = prefix .. job_id
      if redis.call('EXISTS', job_key) == 1 then
        local f = redis.call('HMGET', job_key, 'enqueue_at_front', 'enqueue_at_front_on_retry', 'ended_at', 'ttl')
        local at_front = f[1] == '1' or (f[2] == '1' and f[3] and f[3] ~= '')
        redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', enqueued_at)
        local ttl = tonumber(f[4])
        if ttl and ttl > 0 then
          redis.call('EXPIRE', job_key, ttl)
        end
        if at_front then
          redis.call('LPUSH', queue, job_id)
        else
          redis.call('RPUSH', queue, job_id)
        end
        moved = moved + 1
      end
    end
  end
  local first = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
  if first[2] and (not next_due or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
return {moved, next_due, now[1], now[2]}
