"""A worker killed between rq's LMOVE (queue -> intermediate list) and the start of the job.

The job then sits in `rq:queue:<name>:intermediate` with no lease and no started-registry entry;
every worker's recovery scan puts it back at the front of its queue once it has been seen stuck
`lease_ttl + fence_margin` seconds (`worker.safety.intermediate`). For a worker of one queue the kill
window is simulated deterministically: the test makes the dying worker's LMOVE itself. A worker of
several queues is really killed there: a subprocess worker SIGKILLs itself right after its dequeue
(`crash_jobs.KilledAfterDequeue*`). Real redis-server, real worker subprocesses with a 5 s lease
(`tests.worker.crash_jobs`).
"""

from __future__ import annotations

import pytest
from rq import Queue
from rq.executions import ExecutionRegistry
from rq.job import Job, JobStatus

from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key
from worker.gate import job_ids
from worker.retries.attempts import ATTEMPTS_META_KEY
from worker.rq_compat import layout as rq_layout
from worker.safety import intermediate, leases

WORKERS = {
    "RetryWorker": crash_jobs.FastRetryWorker,
    "SimpleRetryWorker": crash_jobs.FastSimpleRetryWorker,
    "PreforkRetryWorker": crash_jobs.FastPreforkRetryWorker,
}
LEASE_TTL = 5.0
#: lease_ttl + fence_margin (lease_ttl / 6) + a scan interval, plus slack for a busy machine and for
#: the recovery gate after a fresh Redis (uptime under a lease).
RESCUE_BOUND_SECONDS = LEASE_TTL + LEASE_TTL / 6 + 0.5 + 20.0


def dying_workers_lmove(connection, queue: Queue) -> str:
    """What a worker killed right after its dequeue leaves behind: the id moved, nothing started."""
    moved = connection.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    assert moved is not None
    return moved.decode()


def mark_started(
    connection, queue: Queue, job: Job, *, execution_id: str, started: bool, lease: bool
) -> None:
    """What a live worker's start transaction writes (the execution, and the registry entry and lease
    asked for), valid for an hour."""
    member = f"{job.id}:{execution_id}"
    far = redis_now(connection) + 3600
    connection.zadd(ExecutionRegistry(job.id, connection=connection).key, {execution_id: far})
    if started:
        connection.zadd(queue.started_job_registry.key, {member: far})
    if lease:
        connection.zadd(leases.leases(queue.name), {member: far})


def redis_now(connection) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1e6


def ids(connection, list_key: str) -> list[str]:
    return [item.decode() for item in connection.lrange(list_key, 0, -1)]


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_job_dequeued_by_a_worker_that_died_before_starting_it_is_put_back_and_runs_once(
    connection, redis_url, tmp_path, worker_class
):
    cls = WORKERS[worker_class]
    assert cls.lease_ttl == LEASE_TTL
    queue = Queue("stuck", connection=connection)
    # Given a job that a worker moved to the intermediate list and died before starting ...
    stuck = queue.enqueue(crash_jobs.quick)
    assert dying_workers_lmove(connection, queue) == stuck.id
    # ... and one that a live worker has moved there and started (started registry entry and lease)
    running = queue.enqueue(crash_jobs.quick)
    assert dying_workers_lmove(connection, queue) == running.id
    mark_started(connection, queue, running, execution_id="live", started=True, lease=True)
    # ... and one waiting its turn, with a first-seen key from an earlier pass through the list
    waiting = queue.enqueue(crash_jobs.quick)
    first_seen_waiting = rq_layout.first_seen_key(queue.intermediate_queue_key, waiting.id)
    connection.set(first_seen_waiting, redis_now(connection))

    # When a worker serves the queue
    proc = start_worker(
        redis_url, ["stuck"], tmp_path=tmp_path, worker_class=f"{cls.__module__}.{cls.__qualname__}"
    )
    try:
        # Then the stuck job is put back and runs, once, within the bound ...
        def ran():
            assert proc.alive(), proc.output()[-3000:]
            return stuck.get_status() == JobStatus.FINISHED and waiting.get_status() == JobStatus.FINISHED

        wait_until(ran, timeout=RESCUE_BOUND_SECONDS, what=f"job {stuck.id} to be put back and run")
        assert int(connection.get(key(stuck.id, "runs"))) == 1
        assert int(connection.get(key(waiting.id, "runs"))) == 1
        line = f"Job {stuck.id}: dequeued by a worker that died before starting it; put back on stuck"
        wait_until(lambda: line in proc.output(), timeout=5, what="the rescue to be logged")
        # ... without using a retry attempt (it never started) ...
        stuck.refresh()
        assert stuck.meta.get(ATTEMPTS_META_KEY, []) == []
        assert not connection.exists(rq_layout.first_seen_key(queue.intermediate_queue_key, stuck.id))
        # ... the job whose start began the transaction that dropped the first-seen key ...
        assert not connection.exists(first_seen_waiting)
        # ... and the started one, though as long in the list, is left alone: not put back, not run.
        assert ids(connection, queue.intermediate_queue_key) == [running.id]
        assert ids(connection, queue.key) == []
        assert connection.get(key(running.id, "runs")) is None
        assert proc.output().count("put back on") == 1
    finally:
        proc.stop()


def test_the_rescue_script_waits_its_threshold_then_exactly_one_caller_puts_the_job_at_the_front(
    connection,
):
    queue = Queue("stuck", connection=connection)
    stuck = queue.enqueue(crash_jobs.quick)
    dying_workers_lmove(connection, queue)
    behind = queue.enqueue(crash_jobs.quick)
    first_seen = rq_layout.first_seen_key(queue.intermediate_queue_key, stuck.id)

    # A first sighting only notes the time (Redis clock, rq's key, with rq's expiry) ...
    assert intermediate.rescue_stuck(connection, queue, after=3600).requeued == []
    noted = float(connection.get(first_seen))
    assert abs(noted - redis_now(connection)) < 5
    assert 0 < connection.ttl(first_seen) <= intermediate.FIRST_SEEN_SECONDS
    # ... a later one before the threshold does nothing ...
    assert intermediate.rescue_stuck(connection, queue, after=3600).requeued == []
    assert ids(connection, queue.intermediate_queue_key) == [stuck.id]
    assert float(connection.get(first_seen)) == noted
    # ... and past it, the first caller puts it at the front of its queue, the next finds nothing.
    assert intermediate.rescue_stuck(connection, queue, after=0).requeued == [stuck.id]
    assert intermediate.rescue_stuck(connection, queue, after=0) == intermediate.Rescued()
    assert ids(connection, queue.key) == [stuck.id, behind.id]
    assert ids(connection, queue.intermediate_queue_key) == []
    assert not connection.exists(first_seen)
    assert stuck.get_status() == JobStatus.QUEUED


@pytest.mark.parametrize(
    ("started", "lease"), [(True, True), (True, False), (False, True)], ids=["both", "started", "lease"]
)
def test_a_started_job_in_the_intermediate_list_is_left_alone(connection, started, lease):
    queue = Queue("stuck", connection=connection)
    job = queue.enqueue(crash_jobs.quick)
    dying_workers_lmove(connection, queue)
    mark_started(connection, queue, job, execution_id="e1", started=started, lease=lease)

    for _ in range(2):
        assert intermediate.rescue_stuck(connection, queue, after=0) == intermediate.Rescued()
    assert ids(connection, queue.intermediate_queue_key) == [job.id]
    assert ids(connection, queue.key) == []
    assert not connection.exists(rq_layout.first_seen_key(queue.intermediate_queue_key, job.id))


def test_an_id_whose_job_is_gone_or_no_longer_queued_is_removed_not_put_back(connection):
    queue = Queue("stuck", connection=connection)
    deleted = queue.enqueue(crash_jobs.quick)
    ended = queue.enqueue(crash_jobs.quick)
    requeued = queue.enqueue(crash_jobs.quick)
    for _ in range(3):
        dying_workers_lmove(connection, queue)
    connection.delete(deleted.key)
    ended.set_status(JobStatus.FAILED)
    queue.push_job_id(requeued.id)  # already back on the queue, by another path

    # The id without a hash goes at once, as rq's cleanup removes it ...
    assert intermediate.rescue_stuck(connection, queue, after=0) == intermediate.Rescued(gone=[deleted.id])
    # ... the others once past the threshold, and neither is pushed (again).
    rescued = intermediate.rescue_stuck(connection, queue, after=0)
    assert rescued == intermediate.Rescued(removed=[ended.id, requeued.id])
    assert ids(connection, queue.intermediate_queue_key) == []
    assert ids(connection, queue.key) == [requeued.id]


KILLED_AFTER_DEQUEUE = {
    "RetryWorker": crash_jobs.KilledAfterDequeueRetryWorker,
    "SimpleRetryWorker": crash_jobs.KilledAfterDequeueSimpleRetryWorker,
    "PreforkRetryWorker": crash_jobs.KilledAfterDequeuePreforkRetryWorker,
}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_job_taken_by_a_worker_of_several_queues_killed_before_starting_it_is_put_back_and_runs_once(
    connection, redis_url, tmp_path, worker_class
):
    # Given a job waiting on the second of two queues (rq itself pops outright from several queues,
    # which would leave no trace of the job) ...
    high, low = Queue("im-high", connection=connection), Queue("im-low", connection=connection)
    job = low.enqueue(crash_jobs.quick)

    # ... taken by a worker of both queues that is killed (SIGKILL) before starting it
    dying = start_worker(
        redis_url,
        ["im-high", "im-low"],
        tmp_path=tmp_path,
        worker_class=class_path(KILLED_AFTER_DEQUEUE[worker_class]),
        name="dying",
    )
    assert dying.wait(timeout=30) == -9, dying.output()[-3000:]
    assert ids(connection, low.key) == []
    assert ids(connection, high.key) == []
    assert ids(connection, low.intermediate_queue_key) == [job.id]
    assert connection.get(key(job.id, "runs")) is None
    assert job.get_status() == JobStatus.QUEUED

    # When a live worker of the same queues scans them
    proc = start_worker(
        redis_url, ["im-high", "im-low"], tmp_path=tmp_path, worker_class=class_path(WORKERS[worker_class])
    )
    try:
        # Then the job is put back and runs, once, and leaves the intermediate list as it starts
        def ran():
            assert proc.alive(), proc.output()[-3000:]
            return job.get_status() == JobStatus.FINISHED

        wait_until(ran, timeout=RESCUE_BOUND_SECONDS, what=f"job {job.id} to be put back and run")
        assert int(connection.get(key(job.id, "runs"))) == 1
        assert ids(connection, low.intermediate_queue_key) == []
        assert proc.output().count("put back on im-low") == 1
    finally:
        proc.stop()


def test_a_job_started_whose_execution_registry_expired_is_removed_never_put_back(connection):
    # Given a job that started (its hash says so) and whose execution registry has since expired,
    # or was pushed out by junk executions, with its id left in the intermediate list
    queue = Queue("stuck", connection=connection)
    job = queue.enqueue(crash_jobs.quick)
    dying_workers_lmove(connection, queue)
    job.set_status(JobStatus.STARTED)
    # When the rescue has seen it stuck past its threshold
    assert intermediate.rescue_stuck(connection, queue, after=0) == intermediate.Rescued()
    # Then its id is taken off the list and it is not put back: it would run a second time
    assert intermediate.rescue_stuck(connection, queue, after=0) == intermediate.Rescued(removed=[job.id])
    assert ids(connection, queue.key) == []


def forge_job(connection, queue: Queue, job_id: str) -> None:
    """A queued job hash under `job_id` (any bytes), copied from a proper job of `crash_jobs.quick`."""
    proper = Job.create(crash_jobs.quick, connection=connection)
    proper.origin = queue.name
    proper.set_status(JobStatus.QUEUED, pipeline=None)
    proper.save()
    connection.hset(Job.redis_job_namespace_prefix + job_id, mapping=connection.hgetall(proper.key))
    connection.delete(proper.key)


INVALID_IDS = ["x:y", "*", "a b", "[a-z]*"]


def test_an_id_rq_would_not_accept_is_failed_under_its_raw_id_never_put_back(connection):
    # Given ids rq would not accept in the intermediate list, with job hashes, and one without
    queue = Queue("stuck", connection=connection)
    for job_id in INVALID_IDS:
        forge_job(connection, queue, job_id)
        connection.rpush(queue.intermediate_queue_key, job_id)
    connection.rpush(queue.intermediate_queue_key, "no hash:here")
    # When the rescue scans the list, past any threshold
    rescued = intermediate.rescue_stuck(connection, queue, after=0)
    # Then each one with a hash is failed under its raw id, the other dropped, none put back
    assert rescued == intermediate.Rescued(gone=["no hash:here"], failed=INVALID_IDS)
    assert ids(connection, queue.intermediate_queue_key) == []
    assert ids(connection, queue.key) == []
    failed = {item.decode() for item in connection.zrange(queue.failed_job_registry.key, 0, -1)}
    assert failed == set(INVALID_IDS)
    for job_id in INVALID_IDS:
        job_key = Job.redis_job_namespace_prefix + job_id
        assert connection.hget(job_key, "status") == b"failed"
        assert connection.ttl(job_key) > 0  # expires with its failed-registry entry


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_job_id_with_a_colon_is_failed_at_once_and_never_runs_again(
    connection, redis_url, tmp_path, worker_class
):
    # Given a forged job "<id>:forged" (rq reads it as job <id>) pushed onto the queue beside a proper job
    cls = WORKERS[worker_class]
    queue = Queue("colon", connection=connection)
    proper = queue.enqueue(crash_jobs.quick)
    forged = f"{proper.id}:forged"
    forge_job(connection, queue, forged)
    connection.lpush(queue.key, forged)

    # When a worker serves the queue
    proc = start_worker(redis_url, ["colon"], tmp_path=tmp_path, worker_class=class_path(cls))
    try:
        # Then the forged id is failed under its raw id, naming it, and the proper job runs once
        def settled():
            assert proc.alive(), proc.output()[-3000:]
            failed = connection.zrange(queue.failed_job_registry.key, 0, -1)
            return forged.encode() in failed and proper.get_status() == JobStatus.FINISHED

        wait_until(settled, timeout=RESCUE_BOUND_SECONDS, what=f"{forged} to fail and {proper.id} to run")
        assert f"Job {forged!r}: invalid job id found in queue 'colon'" in proc.output()
        # ... and nothing is left for the rescue to put back (the old code left the forged id in the
        # intermediate list, and put it back on the queue every lease_ttl + fence_margin)
        assert ids(connection, queue.intermediate_queue_key) == []
        assert ids(connection, queue.key) == []
        assert int(connection.get(key(proper.id, "runs"))) == 1
    finally:
        proc.stop()


JUNK_IDS = 100_000


def fill_with_junk(connection, queue: Queue, count: int) -> None:
    """What whoever can write to Redis can leave: `count` ids in the intermediate list, each with a
    queued job hash, and as many other members in the started registry and the lease set."""
    prefix = Job.redis_job_namespace_prefix
    for start in range(0, count, 10_000):
        chunk = [f"junk-{n}" for n in range(start, min(count, start + 10_000))]
        with connection.pipeline(transaction=False) as pipe:
            pipe.rpush(queue.intermediate_queue_key, *chunk)
            for job_id in chunk:
                pipe.hset(prefix + job_id, "status", "queued")
            pipe.zadd(queue.started_job_registry.key, {f"other-{job_id}:e": 1e12 for job_id in chunk})
            pipe.zadd(leases.leases(queue.name), {f"other-{job_id}:e": 1e12 for job_id in chunk})
            pipe.execute()


def command_calls(connection) -> dict[str, int]:
    """Commands Redis ran since the last CONFIG RESETSTAT (a script's own commands included)."""
    stats = connection.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


def test_one_rescue_call_does_bounded_work_whatever_junk_redis_holds(connection):
    # Given 100,000 junk ids in the intermediate list and as many junk members in the started
    # registry and the lease set (Redis runs nothing else while the rescue script runs)
    queue = Queue("junk", connection=connection)
    fill_with_junk(connection, queue, JUNK_IDS)
    connection.config_set("slowlog-max-len", 100_000)  # the script's own commands are logged too
    connection.config_set("slowlog-log-slower-than", 0)
    connection.slowlog_reset()
    try:
        for call in range(3):
            # When the rescue scans the list
            connection.config_resetstat()
            intermediate.rescue_stuck(connection, queue, after=3600)
            # Then it looked at one batch of ids and made a bounded number of commands for each,
            # none of them a scan of a whole set
            calls = command_calls(connection)
            assert "zscan" not in calls
            assert calls["lmove"] == intermediate.SCAN_BATCH
            script_commands = sum(n for name, n in calls.items() if not name.startswith(("eval", "script")))
            assert script_commands <= 10 * intermediate.SCAN_BATCH, calls
            # ... and each call looked at the next batch: junk left in the list hides nothing behind it
            noted = connection.keys(f"{queue.intermediate_queue_key}:first_seen:*")
            assert len(noted) == (call + 1) * intermediate.SCAN_BATCH
        log = connection.slowlog_get(100_000)
        blocked = [entry["duration"] / 1000 for entry in log if entry["command"].upper().startswith(b"EVAL")]
        print(f"rescue over {JUNK_IDS} junk ids: each call blocked Redis {sorted(blocked)} ms")
    finally:
        connection.config_set("slowlog-log-slower-than", 10000)  # Redis's defaults
        connection.config_set("slowlog-max-len", 128)


def test_junk_that_stays_in_the_list_does_not_hide_a_stuck_job_behind_it(connection):
    # Given more started junk at the head of the intermediate list than one scan looks at ...
    queue = Queue("stuck", connection=connection)
    for n in range(intermediate.SCAN_BATCH + 50):
        junk = queue.enqueue(crash_jobs.quick)
        dying_workers_lmove(connection, queue)
        mark_started(connection, queue, junk, execution_id=f"e{n}", started=True, lease=True)
    # ... and behind it a job a worker dequeued and died before starting
    stuck = queue.enqueue(crash_jobs.quick)
    dying_workers_lmove(connection, queue)
    # When the rescue has scanned the list a few times
    requeued = []
    for _ in range(4):
        requeued += intermediate.rescue_stuck(connection, queue, after=0).requeued
    # Then the stuck job is back on its queue, and the started junk is still left alone
    assert requeued == [stuck.id]
    assert ids(connection, queue.key) == [stuck.id]
    assert connection.llen(queue.intermediate_queue_key) == intermediate.SCAN_BATCH + 50


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_worker_starting_with_an_id_rq_refuses_in_the_intermediate_list_stays_up(
    connection, redis_url, tmp_path, worker_class
):
    # Given an id rq refuses left in the intermediate list (rq's own cleanup of that list, which a
    # worker runs as it starts, builds a Job of each id and stopped the worker with a ValueError)
    queue = Queue("refused", connection=connection)
    forge_job(connection, queue, "*")
    connection.rpush(queue.intermediate_queue_key, "*")
    job = queue.enqueue(crash_jobs.quick)
    # When a worker starts on the queue
    proc = start_worker(
        redis_url, ["refused"], tmp_path=tmp_path, worker_class=class_path(WORKERS[worker_class])
    )
    try:
        # Then it stays up, runs the queue's job, and fails the id under its raw id
        def settled():
            assert proc.alive(), proc.output()[-3000:]
            return job.get_status() == JobStatus.FINISHED and connection.zscore(
                queue.failed_job_registry.key, "*"
            )

        wait_until(settled, timeout=RESCUE_BOUND_SECONDS, what="the job to run and '*' to be failed")
        assert "Job '*': invalid job id found in the intermediate list of 'refused'" in proc.output()
        assert ids(connection, queue.intermediate_queue_key) == []
    finally:
        proc.stop()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
@pytest.mark.parametrize("queue_names", [["utf"], ["utf", "other"]], ids=["one queue", "two queues"])
def test_an_idle_worker_given_an_id_that_is_not_utf8_stays_up_and_runs_the_next_job(
    connection, redis_url, tmp_path, worker_class, queue_names
):
    # Given an idle worker blocked in rq's own pop (BLMOVE or BLPOP), which decodes the popped id as text
    queue = Queue("utf", connection=connection)
    proc = start_worker(
        redis_url, queue_names, tmp_path=tmp_path, worker_class=class_path(WORKERS[worker_class])
    )
    try:
        wait_until(lambda: blocked_in_a_pop(connection), timeout=30, what="the worker to block in rq's pop")
        # When an id that is not UTF-8 is pushed onto its queue, then a good job
        connection.rpush(queue.key, b"\xff\xfe")
        wait_until(lambda: "not UTF-8" in proc.output(), timeout=30, what="the worker to pop the forged id")
        job = queue.enqueue(crash_jobs.quick)

        # Then the worker stays up, says what it skipped, and runs the good job
        def finished():
            assert proc.alive(), proc.output()[-3000:]
            return job.get_status() == JobStatus.FINISHED

        wait_until(finished, timeout=30, what=f"job {job.id} to run")
        assert "popped a job id that is not UTF-8 (b'\\xff\\xfe')" in proc.output()
    finally:
        proc.stop()


def blocked_in_a_pop(connection) -> bool:
    return any(client.get("cmd") in ("blmove", "blpop") for client in connection.client_list())


#: Started-registry entries rq's registry cleanup read as jobs and raised on ("x:y" is job "x",
#: execution "y": rq reads it, and drops it as a job whose hash is gone).
REFUSED_STARTED = ["a b", "*", "x:y:z", "bad id:exec"]


def plant_refused_registry_entries(connection, queue: Queue) -> None:
    """Ids rq refuses, expired long ago, in `queue`'s started registry; one, with a hash, in its ready one."""
    connection.zadd(queue.started_job_registry.key, dict.fromkeys([*REFUSED_STARTED, "x:y"], 1))
    forge_job(connection, queue, "r q")
    connection.zadd(f"rq:ready:{queue.name}", {"r q": 1})


def assert_refused_entries_failed(connection, queue: Queue) -> None:
    failed = {item.decode() for item in connection.zrange(queue.failed_job_registry.key, 0, -1)}
    assert {*REFUSED_STARTED, "r q"} <= failed
    assert connection.zrange(queue.started_job_registry.key, 0, -1) == []
    assert connection.zrange(f"rq:ready:{queue.name}", 0, -1) == []


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_worker_starting_with_ids_rq_refuses_in_its_registries_stays_up_and_runs_a_job(
    connection, redis_url, tmp_path, worker_class
):
    # Given ids rq refuses in the started and ready registries (rq's registry cleanup, which a
    # worker runs as it starts, raised ValueError on them and the worker quit within a second)
    queue = Queue("registries", connection=connection)
    plant_refused_registry_entries(connection, queue)
    job = queue.enqueue(crash_jobs.quick)
    # When a worker starts on the queue
    proc = start_worker(
        redis_url, ["registries"], tmp_path=tmp_path, worker_class=class_path(WORKERS[worker_class])
    )
    try:
        # Then it stays up and runs the job, and each entry is failed under its raw id, naming it
        def finished():
            assert proc.alive(), proc.output()[-3000:]
            return job.get_status() == JobStatus.FINISHED

        wait_until(finished, timeout=30, what=f"job {job.id} to run")
        assert_refused_entries_failed(connection, queue)
        assert "Job 'a b': invalid job id found in the registry 'rq:wip:registries'" in proc.output()
        assert "Job 'r q': invalid job id found in the registry 'rq:ready:registries'" in proc.output()
    finally:
        proc.stop()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_running_worker_whose_maintenance_meets_ids_rq_refuses_goes_on(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker running its registry maintenance every second
    queue = Queue("registries", connection=connection)
    proc = start_worker(
        redis_url,
        ["registries"],
        tmp_path=tmp_path,
        worker_class=class_path(WORKERS[worker_class]),
        extra_args=["--maintenance-interval", "1"],
    )
    try:
        wait_until(lambda: "cleaning registries" in proc.output(), timeout=30, what="a first maintenance")
        # When ids rq refuses appear in its registries
        plant_refused_registry_entries(connection, queue)

        # ... and it goes on working (rq runs maintenance between two jobs, or when its pop times out)
        def purged():
            assert proc.alive(), proc.output()[-3000:]
            if connection.llen(queue.key) == 0:
                queue.enqueue(crash_jobs.quick)
            return connection.zscore(queue.failed_job_registry.key, "a b") is not None

        # Then its next maintenance fails them under their raw ids, and it stays up and runs a job
        wait_until(purged, timeout=30, what="'a b' to be failed", interval=0.2)
        job = queue.enqueue(crash_jobs.quick)

        def finished():
            assert proc.alive(), proc.output()[-3000:]
            return job.get_status() == JobStatus.FINISHED

        wait_until(finished, timeout=30, what=f"job {job.id} to run")
        assert_refused_entries_failed(connection, queue)
    finally:
        proc.stop()


def test_registry_maintenance_that_raises_is_logged_with_the_queue_and_the_worker_goes_on(
    connection, caplog, monkeypatch
):
    # Given more refused entries than one purge looks at (the rest reach rq's cleanup, which raises)
    queue = Queue("registries", connection=connection)
    connection.zadd(queue.started_job_registry.key, {f"bad {n}:e": 1 for n in range(5)})
    worker = crash_jobs.FastSimpleRetryWorker([queue], connection=connection)
    # When the worker runs its maintenance with a purge batch of 2
    monkeypatch.setattr(job_ids, "REGISTRY_BATCH", 2)
    with caplog.at_level("ERROR"):
        worker.clean_registries()
    # Then rq's error is logged with the queue's name, and the maintenance lock is released
    assert "Queue registries: registry maintenance failed" in caplog.text
    assert "Job ID must only contain" in caplog.text
    assert connection.exists(queue.registry_cleaning_key) == 0
    # ... and the next passes take the next entries
    worker.clean_registries()
    worker.clean_registries()
    assert connection.zcard(queue.failed_job_registry.key) == 5
    assert connection.zcard(queue.started_job_registry.key) == 0


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_busy_worker_drops_an_id_with_a_colon_and_no_hash_with_a_warning_and_runs_nothing_for_it(
    connection, redis_url, tmp_path, worker_class
):
    # Given a stored job that was never queued, and "<its id>:x" (no hash under that id) pushed
    # between two proper jobs, so that a worker pops it between two jobs (one round trip dequeue)
    queue = Queue("colon", connection=connection)
    stored = Job.create(crash_jobs.quick, connection=connection, origin="colon")
    stored.save()
    first = queue.enqueue(crash_jobs.quick)
    forged = f"{stored.id}:x"
    connection.rpush(queue.key, forged)
    last = queue.enqueue(crash_jobs.quick)
    # When a worker works the queue
    proc = start_worker(
        redis_url, ["colon"], tmp_path=tmp_path, worker_class=class_path(WORKERS[worker_class])
    )
    try:
        # Then the forged id is dropped with a warning naming it (the old code dropped it silently) ...
        def settled():
            assert proc.alive(), proc.output()[-3000:]
            return last.get_status() == JobStatus.FINISHED and "no job hash" in proc.output()

        wait_until(settled, timeout=30, what=f"{last.id} to run and {forged} to be dropped")
        assert f"Job {forged!r}: invalid job id popped from queue 'colon'" in proc.output()
        # ... the stored job did not run, and nothing is left in the queue or its intermediate list
        assert first.get_status() == JobStatus.FINISHED
        assert connection.get(key(stored.id, "runs")) is None
        assert ids(connection, queue.key) == []
        assert ids(connection, queue.intermediate_queue_key) == []
    finally:
        proc.stop()


def test_group_maintenance_that_raises_is_logged_and_the_worker_goes_on(connection, caplog):
    # Given a group holding a member that is not UTF-8 (rq's group cleanup decodes each as text)
    connection.sadd("rq:groups", "forged")
    connection.sadd("rq:group:forged", b"\xff\xfe")
    worker = crash_jobs.FastSimpleRetryWorker(
        [Queue("registries", connection=connection)], connection=connection
    )
    # When the worker runs its maintenance
    with caplog.at_level("ERROR"):
        worker.run_maintenance_tasks()
    # Then the error is logged, naming the worker, and nothing is raised
    assert f"Worker {worker.name}: group registry maintenance failed; it goes on" in caplog.text
    assert "UnicodeDecodeError" in caplog.text
