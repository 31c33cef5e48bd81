-- One worker loop's dequeue in one round trip: rq's idle state, heartbeat and suspension check, the
-- pop, the job's hash.
--
-- Does what rq's worker loop sends as separate commands between two jobs when one is waiting:
-- HSET state idle, the heartbeat (HSET last_heartbeat, EXPIRE the worker hash and its execution
-- index), the EXISTS of `rq.suspension.is_suspended`, the non-blocking pop of `Queue.dequeue_any`
-- and the HGETALL of `Job.fetch`. Never blocks; with every queue empty it pops nothing and the
-- worker falls back to rq's blocking dequeue.
--
-- Unlike rq, which moves a job into its queue's intermediate list only when the worker serves one
-- queue (LMOVE) and pops it outright from several (LPOP), it always moves the job into the
-- intermediate list of its queue: a worker killed before the transaction that starts the job (and
-- takes it out of that list) leaves it where `worker.intermediate` finds and puts it back.
--
-- KEYS[1]      rq:worker:<name>                 hash; the worker (state, last_heartbeat)
-- KEYS[2]      rq:worker:<name>:executions      set; the worker's execution index
-- KEYS[3]      rq:suspended                     string; present while workers are suspended
-- KEYS[4..]    rq:queue:<name>, rq:queue:<name>:intermediate for each queue, in dequeue order
--              (LMOVE: Redis >= 6.2)
-- ARGV[1]      "lmove"
-- ARGV[2]      heartbeat timestamp, rq's utcformat
-- ARGV[3]      heartbeat TTL, whole seconds
-- ARGV[4]      job key prefix ("rq:job:"); the job hash is read from ARGV[4] .. job_id
-- ARGV[5]      "check": pop nothing while KEYS[3] exists; "": no suspension check
--
-- Returns {queue key, job id, field, value, field, value...}; false when every queue is empty; -1
-- when suspended (nothing popped).
-- A popped id whose hash is gone is skipped as rq skips it (it stays in the intermediate queue for
-- the cleanups, as with rq); at most 100 such in one call. An id rq would not accept as a job id
-- (letters, digits, "_" and "-" only; rq reads "x:y" as job "x") is returned whether or not it has a
-- hash, so that the caller fails it under that raw id or, with no hash, drops it with a warning.
redis.call('HSET', KEYS[1], 'state', 'idle', 'last_heartbeat', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if ARGV[5] == 'check' and redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
for _ = 1, 100 do
  local queue_key, job_id = nil, nil
  for i = 4, #KEYS, 2 do
    job_id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if job_id then
      queue_key = KEYS[i]
      break
    end
  end
  if not job_id then
    return false
  end
  local hash = redis.call('HGETALL', ARGV[4] .. job_id)
  if #hash > 0 or not string.find(job_id, '^[A-Za-z0-9_%-]+$') then
    local reply = {queue_key, job_id}
    for i = 1, #hash do
      reply[#reply + 1] = hash[i]
    end
    return reply
  end
end
return false
