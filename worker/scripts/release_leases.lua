-- Release the promoter leases a promoter holds, so a standing-by promoter takes over at once.
--
-- KEYS[i]  rq_signals:promoter-lease:<queue>, one per queue of the stopping promoter
-- ARGV[1]  the stopping promoter's name: a lease held by another promoter is left alone
-- ARGV[2]  pub/sub channel told "release <queue>" for each released lease (wakes the others)
-- ARGV[3..] the queue names, in the order of KEYS
--
-- Returns how many leases were released.

local released = 0
for i, lease in ipairs(KEYS) do
  if redis.call('GET', lease) == ARGV[1] then
    redis.call('DEL', lease)
    redis.call('PUBLISH', ARGV[2], 'release ' .. ARGV[i + 2])
    released = released + 1
  end
end
return released
