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
--
-- First-seen keys are rq's own (`IntermediateQueue.get_first_seen_key`):
-- KEYS[2] .. ":first_seen:" .. job_id, a string holding float seconds since the epoch, set NX, so
-- rq's `IntermediateQueue.cleanup` and this script count from the same sighting.
--
-- A job id in the intermediate list that is in the started registry or holds a lease (any of its
-- executions; found through its execution registry, else by ZSCAN MATCH "<job_id>:*") has started:
-- left alone (its worker, or lease recovery, takes it from there). Any other one is stuck until
-- its worker starts it; once first seen at least ARGV[1] seconds ago it is LREM'd and, if the LREM
-- removed it (so exactly one caller acts), its first-seen key is deleted and the job is LPUSHed back
-- to the front of its queue: unless its hash says it is no longer queued (it started at some point
-- and its outcome is someone else's business) or the queue already holds it, when it is only
-- removed. An id whose job hash is gone is removed at once, as rq's cleanup does.
--
-- Returns {requeued ids, removed ids (not put back), ids whose hash was gone}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local threshold = tonumber(ARGV[1])
local requeued, removed, gone = {}, {}, {}

local function started(job_id)
  local executions = redis.call('ZRANGE', ARGV[3] .. job_id, 0, -1)
  for _, execution_id in ipairs(executions) do
    local member = job_id .. ':' .. execution_id
    if redis.call('ZSCORE', KEYS[3], member) or redis.call('ZSCORE', KEYS[4], member) then
      return true
    end
  end
  -- The execution registry expires with the job's heartbeats: look through both sets as well
  -- (rq job ids are [A-Za-z0-9_-]+, nothing a MATCH pattern reads as special).
  for _, key in ipairs({KEYS[3], KEYS[4]}) do
    local cursor = '0'
    repeat
      local page = redis.call('ZSCAN', key, cursor, 'MATCH', job_id .. ':*', 'COUNT', 1000)
      if #page[2] > 0 then
        return true
      end
      cursor = page[1]
    until cursor == '0'
  end
  return false
end

local ids = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[5]) - 1)
for _, job_id in ipairs(ids) do
  local first_seen_key = KEYS[2] .. ':first_seen:' .. job_id
  local job_key = ARGV[2] .. job_id
  if redis.call('EXISTS', job_key) == 0 then
    if redis.call('LREM', KEYS[2], 1, job_id) == 1 then
      redis.call('DEL', first_seen_key)
      gone[#gone + 1] = job_id
    end
  elseif not started(job_id) then
    local set = redis.call('SET', first_seen_key, string.format('%.6f', now), 'NX', 'EX', ARGV[4])
    if not set then
      local first_seen = tonumber(redis.call('GET', first_seen_key) or '')
      if first_seen == nil then
        -- Not a timestamp: count from now.
        redis.call('SET', first_seen_key, string.format('%.6f', now), 'EX', ARGV[4])
      elseif now - first_seen >= threshold and redis.call('LREM', KEYS[2], 1, job_id) == 1 then
        redis.call('DEL', first_seen_key)
        if redis.call('HGET', job_key, 'status') == 'queued' and not redis.call('LPOS', KEYS[1], job_id) then
          redis.call('LPUSH', KEYS[1], job_id)
          requeued[#requeued + 1] = job_id
        else
          removed[#removed + 1] = job_id
        end
      end
    end
  end
end
return {requeued, removed, gone}
