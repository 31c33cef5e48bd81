-- Move the due retries of some queues from rq's scheduled registry onto their queues, atomically.
--
-- For each queue i = 1..n, four keys:
--   KEYS[4i-3]  rq_signals:retries:<queue>         our index of pending retries, scored by due time
--   KEYS[4i-2]  rq:scheduled:<queue>               rq's ScheduledJobRegistry (same member, same score)
--   KEYS[4i-1]  rq:queue:<queue>                   the list workers pop job ids from
--   KEYS[4i]    rq_signals:promoter-lease:<queue>  which promoter is on duty for this queue
-- ARGV[1]  job hash key prefix, "rq:job:" (job hashes are named from the ids found; not cluster-safe,
--          like rq itself)
-- ARGV[2]  most retries moved per queue in one call (the caller calls again when more are due)
-- ARGV[3]  the calling promoter's name; "" to promote every queue regardless of leases
-- ARGV[4]  lease time to live, milliseconds
-- ARGV[5]  grace, seconds: how late a retry must be before a promoter not on duty moves it
-- ARGV[6]  pub/sub channel told "promoted <queue> <next due or nothing>" after moving retries
-- ARGV[7..] the queue names, in the order of the keys
--
-- A retry is due when its score <= TIME. It is pushed only if this call is the one that removed it
-- from rq's registry (ZREM returned 1): several promoters, rq's scheduler, or a user who deleted or
-- enqueued the job by hand can never make it run twice. The job hash gets what rq's enqueue writes
-- (status "queued", enqueued_at, TTL) and the id goes to the back of the queue, or to the front when
-- rq would put it there (enqueue_at_front, or enqueue_at_front_on_retry after a run).
--
-- Duty: the promoter holding a queue's lease (taken when free, renewed by each call) moves its retries
-- when due; the others stand by, moving only retries overdue by the grace (the one on duty stalled)
-- and taking the lease over once it expires (it died) or is released. The announcement after a move
-- lets those standing by re-plan without asking Redis: one call per due time, not one per worker.
--
-- Returns {moved, server seconds, server microseconds, duty, next due of queue 1, ..., of queue n}:
-- duty has one character per queue, "1" where this caller is on duty; a next due is the earliest
-- pending score of that queue ("" when none); times are strings.

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless told to replicate effects.
if redis.replicate_commands then redis.replicate_commands() end

local now = redis.call('TIME')
local sec, usec = tonumber(now[1]), tonumber(now[2])
local now_score = string.format('%.6f', sec + usec / 1000000)
local prefix, limit, owner, lease_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local grace, channel = tonumber(ARGV[5]), ARGV[6]
local late_score = string.format('%.6f', sec + usec / 1000000 - grace)

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
local duty = {}
local next_due = {}

local function promote(index, scheduled, queue, up_to)
  local count = 0
  local due = redis.call('ZRANGEBYSCORE', index, '-inf', up_to, 'LIMIT', 0, limit)
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
        count = count + 1
      end
    end
  end
  return count
end

for i = 1, #KEYS, 4 do
  local q = (i + 3) / 4
  local holder = owner ~= '' and redis.call('GET', KEYS[i + 3])
  local on_duty = owner == '' or not holder or holder == owner
  if on_duty and owner ~= '' then
    redis.call('SET', KEYS[i + 3], owner, 'PX', lease_ms)
  end
  local count = promote(KEYS[i], KEYS[i + 1], KEYS[i + 2], on_duty and now_score or late_score)
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  next_due[q] = first[2] or ''
  duty[q] = on_duty and '1' or '0'
  if count > 0 then
    moved = moved + count
    redis.call('PUBLISH', channel, 'promoted ' .. ARGV[6 + q] .. ' ' .. next_due[q])
  end
end
local reply = {moved, now[1], now[2], table.concat(duty)}
for q = 1, #next_due do
  reply[#reply + 1] = next_due[q]
end
return reply
