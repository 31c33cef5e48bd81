"""Self-fencing: a worker that cannot renew its job's lease stops the job before anyone may claim it.

Real redis-server, real worker subprocesses, and a TCP proxy (`crash_jobs.Partition`) that cuts one
worker off from a Redis that stays up. The workers use a 5 s lease renewed every second and the
default margin (5/6 s): a cut-off worker stops its run about 4.2 s after its last renewal got
through; other workers claim the job no earlier than 5.8 s after it.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import threading
import time

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.processes import python_env, start_worker
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key, wait_started
from tests.worker.retry_support import attempts, settle
from worker import Backoff
from worker.core import WorkerCore
from worker.retries.backoff import POLICY_META_KEY
from worker.safety import leases
from worker.safety.fencing import FENCED_EXIT_STATUS, Fence
from worker.safety.reconnect import retry_forever
from worker.workers import RetryWorker

WORKERS = {
    "RetryWorker": "tests.worker.crash_jobs.FastRetryWorker",
    "SimpleRetryWorker": "tests.worker.crash_jobs.FastSimpleRetryWorker",
    "PreforkRetryWorker": "tests.worker.crash_jobs.FastPreforkRetryWorker",
}
LEASE_SECONDS = crash_jobs.FastRetryWorker.lease_ttl
MARGIN_SECONDS = LEASE_SECONDS / 6
#: A cut this long misses a renewal or two but leaves the lease well short of its fence.
BRIEF_CUT_SECONDS = 1.5
POLICY = Backoff(max_retries=2, base=0.05, jitter="none")


def enqueue(queue: Queue) -> Job:
    return queue.enqueue(crash_jobs.hang_first_run, meta={POLICY_META_KEY: POLICY.to_dict()})


def redis_now(connection) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1e6


# -- the watchdog on its own --------------------------------------------------------------------------


class Stops:
    """A `stop` callback that records its calls; it can say "not yet" a few times first."""

    def __init__(self, refusals: int = 0) -> None:
        self.calls: list[str] = []
        self.refusals = refusals

    def __call__(self, job_id: str) -> bool:
        self.calls.append(job_id)
        return len(self.calls) > self.refusals


def fence(stop, *, lease_ttl: float = 0.6, margin: float = 0.2) -> Fence:
    return Fence(
        stop, lease_ttl=lease_ttl, margin=margin, log=logging.getLogger("test.fence"), name="test-fence"
    )


def test_a_lease_unrenewed_for_lease_ttl_minus_margin_is_fenced_and_its_run_stopped(caplog):
    stops = Stops()
    watchdog = fence(stops)
    try:
        armed_at = time.monotonic()
        watchdog.arm("job-1", armed_at)

        wait_until(lambda: stops.calls, timeout=5, what="the fence to stop job-1")
        stopped_after = time.monotonic() - armed_at

        assert stops.calls == ["job-1"]
        assert 0.4 <= stopped_after < 2.0
        assert watchdog.is_fenced("job-1")
        assert "Job job-1: lease not renewed for 0.4s (lease 0.6s); stopping its run" in caplog.text
        # A renewal that gets through afterwards does not revive it
        watchdog.renewed("job-1", time.monotonic())
        assert watchdog.is_fenced("job-1")
    finally:
        watchdog.close()


def test_renewals_that_get_through_keep_the_fence_away_and_an_ended_job_is_never_fenced():
    stops = Stops()
    watchdog = fence(stops, lease_ttl=1.2, margin=0.2)  # fenced 1 s after the last renewal
    try:
        watchdog.arm("job-1", time.monotonic())
        until = time.monotonic() + 2.0  # twice the fence's limit
        while time.monotonic() < until:
            watchdog.renewed("job-1", time.monotonic())
            threading.Event().wait(0.1)  # the renewal interval
        watchdog.disarm()
        threading.Event().wait(1.5)  # past the limit: a disarmed job is never fenced

        assert stops.calls == []
        assert not watchdog.is_fenced("job-1")
    finally:
        watchdog.close()


def test_a_run_that_cannot_be_stopped_yet_is_stopped_as_soon_as_it_can():
    # As when the horse is not forked yet: `stop` says "not yet" until it can act
    stops = Stops(refusals=3)
    watchdog = fence(stops)
    try:
        watchdog.arm("job-1", time.monotonic() - 1.0)  # its lease is already past the fence
        wait_until(lambda: len(stops.calls) == 4, timeout=5, what="the fourth try to stop job-1")
        # the next job starts afresh
        watchdog.arm("job-2", time.monotonic())
        assert not watchdog.is_fenced("job-2")
        assert stops.calls == ["job-1"] * 4
    finally:
        watchdog.close()


@pytest.mark.parametrize("margin", [0.0, -1.0, 3.5])
def test_a_margin_that_leaves_no_room_for_two_renewals_is_refused_naming_it(connection, margin):
    with pytest.raises(ValueError, match=r"fence_margin must be > 0 and leave two renewals"):
        RetryWorker(
            [Queue("fence", connection=connection)], connection=connection, lease_ttl=5, fence_margin=margin
        )


def test_the_default_margin_is_a_sixth_of_the_lease(connection):
    built = RetryWorker([Queue("fence", connection=connection)], connection=connection)
    assert isinstance(built, WorkerCore)
    assert (built.lease_ttl, built.fence_margin, built.job_monitoring_interval) == (15.0, 2.5, 5)


def test_the_client_knows_when_the_attempt_that_got_through_was_sent_in_each_thread(redis_url):
    # What a lease counts from after an outage: the attempt that got through, not the first one
    client = redis.Redis.from_url(redis_url)
    retry = retry_forever(client)
    try:
        assert copy.deepcopy(retry) is retry  # every connection shares what the client saw
        before = time.monotonic()
        client.ping()
        assert before <= retry.last_attempt_sent_at(default=0.0) <= time.monotonic()
        assert retry.failures_here() == 0
        other: list[float] = []
        thread = threading.Thread(target=lambda: other.append(retry.last_attempt_sent_at(default=-1.0)))
        thread.start()
        thread.join(5)
        assert other == [-1.0]  # another thread has sent nothing
    finally:
        client.close()


# -- claimers wait the margin ---------------------------------------------------------------------------


def test_an_expired_lease_is_claimable_only_a_margin_past_its_expiry(connection):
    # Given a lease that has just run out
    queue = Queue("fence", connection=connection)
    member = crash_jobs.expired_lease(connection, queue)
    started_key = queue.started_job_registry.key

    # Then within the margin no scan lists it and no claim takes it ...
    assert leases.expired_members(connection, queue.name, margin=30.0) == []
    assert not leases.try_claim(
        connection, queue.name, started_key, member, "early", 5.0, "expired", margin=30.0
    )
    # ... and once past the margin one claim does
    wait_until(
        lambda: leases.expired_members(connection, queue.name, margin=0.3) == [member],
        timeout=5,
        what="the lease to be a margin past its expiry",
    )
    assert leases.try_claim(connection, queue.name, started_key, member, "late", 5.0, "expired", margin=0.3)


# -- workers cut off from Redis -------------------------------------------------------------------------


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_worker_cut_off_stops_its_run_before_another_may_claim_it_and_the_job_runs_again_once(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker reaching Redis through a link, in the middle of a job with a retry policy
    queue = Queue("fence", connection=connection)
    job = enqueue(queue)
    link = crash_jobs.Partition(connection.connection_pool.connection_kwargs["port"])
    first = start_worker(
        link.url(), ["fence"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="first"
    )
    second = None
    try:
        runner_pid = wait_started(connection, job, first)
        lease_key = leases.leases(queue.name)
        ((member, _),) = connection.zrange(lease_key, 0, -1, withscores=True)

        # When the link is cut (Redis stays up)
        link.cut()
        cut_at = time.monotonic()

        # Then the run stops within a lease, without the worker reaching Redis ...
        wait_until(
            lambda: not crash_jobs.is_running(runner_pid),
            timeout=LEASE_SECONDS + 5,
            what="the fenced run to stop",
        )
        fenced_after = time.monotonic() - cut_at
        stopped_at = redis_now(connection)
        print(f"{worker_class}: run of job {job.id} fenced {fenced_after:.2f}s after the cut")
        assert fenced_after < LEASE_SECONDS
        assert f"Job {job.id}: lease not renewed for" in first.output()
        # ... before anyone may claim the job: its lease is unclaimed and not yet a margin past expiry
        assert not connection.exists(leases.claim(member.decode()))
        assert stopped_at < connection.zscore(lease_key, member) + MARGIN_SECONDS
        if worker_class == "SimpleRetryWorker":
            assert first.wait(10) == FENCED_EXIT_STATUS  # the job ran in it: it exits, for its supervisor
        else:
            assert first.alive()  # it killed its horse and goes on

        # And another worker recovers the job and runs it once more, never alongside the first run
        second = start_worker(
            redis_url, ["fence"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="second"
        )
        assert settle(connection, queue, job, timeout=60) == JobStatus.FINISHED
        history = attempts(job)
        assert [a["outcome"] for a in history] == ["retrying", "succeeded"]
        assert history[0]["exc_type"] == "worker.exceptions.WorkerCrashed"
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert not connection.exists(key(job.id, "overlap"))

        # And once the link is back, the first worker leaves the job to its new owner and goes on
        link.mend()
        if worker_class != "SimpleRetryWorker":
            second.stop()
            after = queue.enqueue(crash_jobs.quick)
            wait_until(lambda: after.get_status() == JobStatus.FINISHED, timeout=20, what="the next job")
            assert first.alive()
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert job.get_status() == JobStatus.FINISHED
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    finally:
        link.mend()
        first.kill()
        if second is not None:
            second.stop()
        link.close()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_brief_cut_shorter_than_the_fence_leaves_the_run_alone(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker reaching Redis through a link, in the middle of a job
    queue = Queue("fence", connection=connection)
    job = enqueue(queue)
    link = crash_jobs.Partition(connection.connection_pool.connection_kwargs["port"])
    worker = start_worker(link.url(), ["fence"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    try:
        runner_pid = wait_started(connection, job, worker)
        lease_key = leases.leases(queue.name)
        ((member, expiry_before),) = connection.zrange(lease_key, 0, -1, withscores=True)

        # When the link is cut for a moment (a renewal or two miss), then mended
        link.cut()
        threading.Event().wait(BRIEF_CUT_SECONDS)  # the fault's length, not a synchronisation
        link.mend()
        wait_until(
            lambda: connection.zscore(lease_key, member) > expiry_before + BRIEF_CUT_SECONDS,
            timeout=10,
            what="a renewal after the link came back",
        )

        # Then the run went on, and the job completes once, on that worker
        assert crash_jobs.is_running(runner_pid)
        connection.set(key(job.id, "release"), 1)
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=20, what=f"job {job.id} to finish")
        assert int(connection.get(key(job.id, "runs"))) == 1
        assert attempts(job) == []
        assert "lease not renewed" not in worker.output()
        assert worker.alive()
    finally:
        link.mend()
        worker.kill()
        link.close()


# -- Redis down for everyone ----------------------------------------------------------------------------


@pytest.fixture
def own_redis():
    server = RedisServer(persistent=True).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.parametrize("worker_class", ["RetryWorker", "SimpleRetryWorker"])
def test_a_run_fenced_while_redis_was_down_is_recovered_and_runs_again_once(
    own_redis, tmp_path, worker_class
):
    connection = redis.Redis.from_url(own_redis.url)
    queue = Queue("fence", connection=connection)
    job = enqueue(queue)
    worker = start_worker(own_redis.url, ["fence"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    replacement = None
    try:
        runner_pid = wait_started(connection, job, worker)

        # When Redis is down for longer than the fence (it cannot tell a restart from a partition)
        own_redis.stop()
        wait_until(
            lambda: not crash_jobs.is_running(runner_pid),
            timeout=LEASE_SECONDS + 5,
            what="the fenced run to stop",
        )
        own_redis.start()
        if worker_class == "SimpleRetryWorker":
            assert worker.wait(10) == FENCED_EXIT_STATUS
            # (its supervisor starts it again)
            replacement = start_worker(
                own_redis.url, ["fence"], tmp_path=tmp_path, worker_class=WORKERS[worker_class]
            )

        # Then, a lease after Redis came back, the job is recovered and runs again, once: nothing lost
        assert settle(connection, queue, job, timeout=60) == JobStatus.FINISHED
        assert [a["outcome"] for a in attempts(job)] == ["retrying", "succeeded"]
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert not connection.exists(key(job.id, "overlap"))
        if worker_class == "RetryWorker":
            assert worker.alive()
    finally:
        worker.kill()
        if replacement is not None:
            replacement.stop()
        connection.close()


#: Builds a SimpleRetryWorker in-process, as rq's own tests and users' tests do, and starts a job's
#: execution by hand (no work loop, never ended), empties Redis, then outlives the lease and its fence.
_BY_HAND = """
import sys, threading
import redis
from rq import Queue
from tests.worker.crash_jobs import FastSimpleRetryWorker
connection = redis.Redis.from_url(sys.argv[1])
queue = Queue("by-hand", connection=connection)
worker = FastSimpleRetryWorker([queue], connection=connection)
worker.prepare_execution(queue.enqueue("tests.worker.crash_jobs.hang_first_run"))
connection.flushall()  # as a test suite's teardown does: renewals no longer find the lease
threading.Event().wait(float(sys.argv[2]))  # a span to outlive, not a synchronisation
print("still running")
"""


def test_an_execution_started_by_hand_outside_the_work_loop_is_never_fenced(redis_url):
    # Given a process that starts an execution by hand and never ends it
    outlive = LEASE_SECONDS + MARGIN_SECONDS + 1.0
    proc = subprocess.run(
        [sys.executable, "-c", _BY_HAND, redis_url, str(outlive)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=outlive + 30,
    )
    # Then the process lives past the moment a fence would have stopped it
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.strip() == "still running"
    assert "lease not renewed" not in proc.stderr
