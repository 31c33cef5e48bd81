-- Put back on its queue each job that a worker moved to the queue's intermediate list (rq's LMOVE)
-- and died before starting; times are the Redis server's clock.
--
-- KEYS[1]  rq:queue:<name>                    list; the queue (LMOVE takes from its LEFT end)
-- KEYS[2]  rq:queue:<name>:intermediate       list; job ids dequeued and not yet started
-- KEYS[3]  rq:wip:<name>                      sorted set; rq's started registry, members
--                                               "<job_id>:<execution_id>"
-- KEYS[4]  rq_signals:leases:<name>           sorted set; our leases, same members
-- ARGV[1]  seconds a job must have been seen stuck before it is put back (lease_ttl + fence_margin)
-- ARGV[2]  job key prefix ("rq:job:"); a job's hash is ARGV[2] .. job_id
-- ARGV[3]  execution registry prefix ("rq:executions:"); sorted set ARGV[3] .. job_id of the job's
--          execution ids (rq's ExecutionRegistry, written in the transaction that starts a job)
-- ARGV[4]  expiry of a first-seen key, whole seconds (rq's: a day)
-- ARGV[5]  most ids of the intermediate list looked at in one call
-- ARGV[6]  most executions of one job looked at (its newest)
-- ARGV[7]  most entries of the queue compared when looking for the id there
--
-- Bounded work: whoever can write to Redis can fill the list, the registries and a job's execution
-- registry with junk, and Redis runs nothing else while a script runs. Each call looks at ARGV[5] ids
-- at most, and for each makes O(1) commands, none scanning more than ARGV[6] entries (or ARGV[5], for
-- an LREM) or ARGV[7] (an LPOS): no ZSCAN, no MATCH pattern. Each id looked at and left in the list is moved to its tail
-- (LMOVE within the list), so the next call looks at the next ids: junk that stays cannot hide a job
-- behind it. Order in the list means nothing to anyone: a worker's start takes its id out by value.
--
-- First-seen keys are rq's own (`IntermediateQueue.get_first_seen_key`):
-- KEYS[2] .. ":first_seen:" .. job_id, a string holding float seconds since the epoch, set NX, so
-- rq's `IntermediateQueue.cleanup` and this script count from the same sighting.
--
-- An id rq would not accept as a job id (letters, digits, "_" and "-" only; rq reads "x:y" as job
-- "x") is taken off the list and, if it has a hash, returned for the caller to fail under that raw
-- id: never put back on the queue. One without a hash goes as any other whose hash is gone.
-- A job id in the list that has started (one of its newest ARGV[6] executions is in the started
-- registry or holds a lease) is left alone: its worker, or lease recovery, takes it from there.
-- Any other one is stuck until its worker starts it; once first seen at least ARGV[1] seconds ago
-- it is LREM'd and, if the LREM removed it (so exactly one caller acts), its first-seen key is
-- deleted and the job is LPUSHed back to the front of its queue: unless its hash says it is no
-- longer queued (it started at some point, its execution registry since expired or pushed out by
-- junk, and its outcome is someone else's business) or the queue's first ARGV[7] entries already
-- hold it, when it is only removed (further down a longer queue, it is pushed: at least once). An id whose job hash is gone is removed at once, as rq's
-- cleanup does.
--
-- Returns {requeued ids, removed ids (not put back), ids whose hash was gone, invalid ids to fail}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local threshold = tonumber(ARGV[1])
local executions_looked_at = tonumber(ARGV[6])
local queue_looked_at = tonumber(ARGV[7])
local requeued, removed, gone, invalid = {}, {}, {}, {}

local function started(job_id)
  local executions = redis.call('ZRANGE', ARGV[3] .. job_id, 0, executions_looked_at - 1, 'REV')
  for _, execution_id in ipairs(executions) do
    local member = job_id .. ':' .. execution_id
    if redis.call('ZSCORE', KEYS[3], member) or redis.call('ZSCORE', KEYS[4], member) then
      return true
    end
  end
  return false
end

-- Takes the id just moved to the tail off the list; true if this call removed it.
local function take(job_id)
  return redis.call('LREM', KEYS[2], -1, job_id) == 1
end

local count = math.min(tonumber(ARGV[5]), redis.call('LLEN', KEYS[2]))
for _ = 1, count do
  local job_id = redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT')
  if not job_id then
    break
  end
  local first_seen_key = KEYS[2] .. ':first_seen:' .. job_id
  local job_key = ARGV[2] .. job_id
  if redis.call('EXISTS', job_key) == 0 then
    if take(job_id) then
      redis.call('DEL', first_seen_key)
      gone[#gone + 1] = job_id
    end
  elseif not string.find(job_id, '^[A-Za-z0-9_%-]+$') then
    if take(job_id) then
      redis.call('DEL', first_seen_key)
      invalid[#invalid + 1] = job_id
    end
  elseif not started(job_id) then
    local set = redis.call('SET', first_seen_key, string.format('%.6f', now), 'NX', 'EX', ARGV[4])
    if not set then
      local first_seen = tonumber(redis.call('GET', first_seen_key) or '')
      if first_seen == nil then
        -- Not a timestamp: count from now.
        redis.call('SET', first_seen_key, string.format('%.6f', now), 'EX', ARGV[4])
      elseif now - first_seen >= threshold and take(job_id) then
        redis.call('DEL', first_seen_key)
        if redis.call('HGET', job_key, 'status') == 'queued'
          and not redis.call('LPOS', KEYS[1], job_id, 'MAXLEN', queue_looked_at) then
          redis.call('LPUSH', KEYS[1], job_id)
          requeued[#requeued + 1] = job_id
        else
          removed[#removed + 1] = job_id
        end
      end
    end
  end
end
return {requeued, removed, gone, invalid}
