-- What rq's Queue.enqueue_many (rq 3.0) writes for a group of new jobs of one queue, in one script.
--
-- KEYS = rq:queues, the queue's list, then one rq:job:<id> per job; ARGV = the
-- created_at/enqueued_at stamp, the queue's name (origin), then per job: id, data (zlib), description,
-- timeout, meta ('' for none). The fields rq's ``Job.to_dict`` writes empty for a job that has not
-- run (callback names, started_at, ended_at, last_heartbeat, worker_name, group_id) are left out:
-- ``Job.restore`` reads an absent field as it reads an empty one. SADD first: under maxmemory a
-- script is refused at its first write or not at all; the ids before the hashes, so a queue key of
-- the wrong type fails the script before it writes a hash.
redis.call('SADD', KEYS[1], KEYS[2])
local per_job, first = 5, 3
for from = first, #KEYS, 1000 do
  local ids = {}
  for i = from, math.min(from + 999, #KEYS) do
    ids[#ids + 1] = ARGV[first + (i - first) * per_job]
  end
  redis.call('RPUSH', KEYS[2], unpack(ids))
end
local stamp, origin = ARGV[1], ARGV[2]
for i = first, #KEYS do
  local a = first + (i - first) * per_job
  if ARGV[a + 4] == '' then
    redis.call('HSET', KEYS[i], 'status', 'queued', 'created_at', stamp, 'data', ARGV[a + 1],
      'origin', origin, 'description', ARGV[a + 2], 'enqueued_at', stamp, 'timeout', ARGV[a + 3])
  else
    redis.call('HSET', KEYS[i], 'status', 'queued', 'created_at', stamp, 'data', ARGV[a + 1],
      'origin', origin, 'description', ARGV[a + 2], 'enqueued_at', stamp, 'timeout', ARGV[a + 3],
      'meta', ARGV[a + 4])
  end
end
return #KEYS - 2
