"""Crash recovery as an operator sees it: a worker dies mid-job (kill -9, OOM) and the job is not lost.

Real redis-server, real `rq worker` subprocesses killed by pid. The workers use a 5 s lease
(`tests.worker.crash_jobs`), so detection takes seconds; every wait is bounded by the 60 s the
guarantee promises.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus

from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key, wait_started
from tests.worker.retry_support import attempts, settle
from worker import Backoff
from worker.retries.backoff import POLICY_META_KEY
from worker.safety import leases

DETECTION_BOUND_SECONDS = 60.0
WORKERS = {
    "RetryWorker": "tests.worker.crash_jobs.FastRetryWorker",
    "SimpleRetryWorker": "tests.worker.crash_jobs.FastSimpleRetryWorker",
}


def enqueue(queue: Queue, func, *, policy: Backoff | None) -> Job:
    meta = {POLICY_META_KEY: policy.to_dict()} if policy is not None else {}
    return queue.enqueue(func, meta=meta)


def gone(pid: int) -> bool:
    return not crash_jobs.is_running(pid)


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_job_of_a_killed_worker_is_recovered_and_run_by_another(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker running a job with a retry policy, and a second worker on the same queue
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    first = start_worker(
        redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="first"
    )
    second = None
    try:
        runner_pid = wait_started(connection, job, first)
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="second"
        )

        # When the first worker is killed outright
        first.kill()
        killed_at = time.monotonic()

        # Then its job stops with it (no orphaned horse runs on) ...
        wait_until(lambda: gone(runner_pid), timeout=10, what=f"process {runner_pid} running the job to die")
        # ... the crash is detected well within a minute and recorded as an attempt ...
        history = wait_until(
            lambda: attempts(job), timeout=DETECTION_BOUND_SECONDS, what="the crash to be recorded"
        )
        detected_after = time.monotonic() - killed_at
        print(f"{worker_class}: crash of job {job.id} detected after {detected_after:.1f}s")
        assert history[0]["exc_type"] == "worker.exceptions.WorkerCrashed"
        assert history[0]["outcome"] == "retrying"
        assert "died mid-job" in history[0]["message"]

        # ... and the second worker runs it to completion, never two runs at once.
        assert settle(connection, queue, job, timeout=30) == JobStatus.FINISHED
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert not connection.exists(key(job.id, "overlap"))
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_crashed_job_without_retries_left_lands_in_the_failed_registry_saying_why(
    connection, redis_url, tmp_path
):
    # Given a job with no retries to spare, on a SimpleRetryWorker (RetryWorker crashes are covered above)
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=0))
    first = start_worker(
        redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS["SimpleRetryWorker"], name="first"
    )
    second = None
    try:
        wait_started(connection, job, first)
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS["SimpleRetryWorker"], name="second"
        )
        first.kill()

        assert settle(connection, queue, job, timeout=DETECTION_BOUND_SECONDS) == JobStatus.FAILED
        assert job.id in queue.failed_job_registry.get_job_ids()
        assert "WorkerCrashed" in job.latest_result().exc_string
        assert "died mid-job" in job.latest_result().exc_string
        assert [a["outcome"] for a in attempts(job)] == ["failed"]
        assert int(connection.get(key(job.id, "runs"))) == 1
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_killed_work_horse_is_a_crash_retried_by_its_own_worker(connection, redis_url, tmp_path):
    # Given a RetryWorker whose work horse is running a job
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    worker = start_worker(redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS["RetryWorker"])
    try:
        horse_pid = wait_started(connection, job, worker)
        assert horse_pid != worker.pid

        # When the kernel kills the horse (as the OOM killer would)
        os.kill(horse_pid, signal.SIGKILL)

        # Then the worker records the crash, retries the job and lives on
        assert settle(connection, queue, job, timeout=30) == JobStatus.FINISHED
        first = attempts(job)[0]
        assert first["exc_type"] == "worker.exceptions.WorkerCrashed"
        assert "killed by signal 9 (SIGKILL)" in first["message"]
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert worker.alive()
    finally:
        worker.stop()


@pytest.mark.parametrize("rq_retry", [None, Retry(max=1)], ids=["no-retry", "rq-Retry"])
def test_crashed_job_without_a_policy_gets_rqs_own_treatment(connection, redis_url, tmp_path, rq_retry):
    # A job without our policy: rq's Retry if it has one, else failed as abandoned, as rq's cleanup does
    queue = Queue("crash", connection=connection)
    job = queue.enqueue(crash_jobs.hang_first_run, retry=rq_retry)
    first = start_worker(
        redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS["RetryWorker"], name="first"
    )
    second = None
    try:
        wait_started(connection, job, first)
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS["RetryWorker"], name="second"
        )
        first.kill()

        status = settle(connection, queue, job, timeout=DETECTION_BOUND_SECONDS)
        assert attempts(job) == []
        if rq_retry is None:
            assert status == JobStatus.FAILED
            exc_string = job.latest_result().exc_string
            assert "AbandonedJobError" in exc_string and "died mid-job" in exc_string
        else:
            assert status == JobStatus.FINISHED
            assert int(connection.get(key(job.id, "runs"))) == 2
            assert job.retries_left == 0
    finally:
        first.kill()
        if second is not None:
            second.stop()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_worker_that_finds_its_lease_claimed_stops_its_run(connection, redis_url, tmp_path, worker_class):
    # The backstop behind self-fencing (tests/worker/test_fencing.py): should a claim ever come while
    # the run is still under way (a watchdog starved of the GIL, a clock stepped forward), the worker
    # stops its run at its next renewal.
    # Given a worker in the middle of a job
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    worker = start_worker(redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    try:
        runner_pid = wait_started(connection, job, worker)
        ((member, _),) = connection.zrange(leases.leases(queue.name), 0, -1, withscores=True)

        # When another worker claims its lease
        assert leases.try_claim(
            connection, queue.name, queue.started_job_registry.key, member.decode(), "other", 30.0, "own"
        )

        # Then its run stops at the next renewal: a RetryWorker kills its horse and goes on, a
        # SimpleRetryWorker, whose job runs in it, exits
        wait_until(lambda: gone(runner_pid), timeout=10, what=f"the run {runner_pid} to stop")
        assert "another worker recovered the job" in worker.output()
        if worker_class == "RetryWorker":
            assert worker.alive()
        else:
            assert worker.wait(10) == 1
        assert int(connection.get(key(job.id, "runs"))) == 1
    finally:
        worker.kill()


def test_of_several_workers_racing_for_one_dead_job_exactly_one_claims_it(connection):
    # Given a job whose worker stopped renewing its lease: a lease that has just run out
    queue = Queue("crash", connection=connection)
    member = crash_jobs.expired_lease(connection, queue)

    # When several workers try to claim it at once
    wins = [
        leases.try_claim(
            connection, queue.name, queue.started_job_registry.key, member, f"token-{n}", 5.0, "expired"
        )
        for n in range(5)
    ]

    # Then exactly one gets it; the dead worker, were it to come back, learns it lost the job;
    # and the winner's claim pushes the lease out, so no scan sees the job as dead meanwhile
    assert wins.count(True) == 1
    assert leases.renew_lease(connection, queue.name, member, 5.0) == -1
    assert leases.expired_members(connection, queue.name) == []


def test_a_lease_whose_job_rq_already_ended_is_dropped_not_recovered(connection):
    # rq removed the execution from its started registry (the job ended) but the lease lingered
    queue = Queue("crash", connection=connection)
    member = "job-2:execution-1"
    with connection.pipeline() as pipeline:
        leases.add_lease(pipeline, queue.name, member, ttl=0.001)
        pipeline.execute()
    wait_until(lambda: leases.expired_members(connection, queue.name), timeout=5, what="the lease to run out")

    claimed = leases.try_claim(
        connection, queue.name, queue.started_job_registry.key, member, "t", 5.0, "expired"
    )

    assert not claimed
    assert connection.zcard(leases.leases(queue.name)) == 0


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_job_running_longer_than_its_lease_is_renewed_not_recovered(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker running a job, and a second worker scanning the queue for dead workers' jobs
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    first = start_worker(
        redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="first"
    )
    second = None
    try:
        wait_started(connection, job, first)
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="second"
        )
        lease_key = leases.leases(queue.name)
        ((member, first_expiry),) = connection.zrange(lease_key, 0, -1, withscores=True)

        # When the job runs on past the expiry of the lease it started with
        wait_until(
            lambda: redis_now(connection) > first_expiry + 1.0,
            timeout=crash_jobs.FastSimpleRetryWorker.lease_ttl + 5,
            what="the job to outlive its first lease",
        )

        # Then its lease has been renewed, nobody recovered it, and it finishes once, on its worker
        assert connection.zscore(lease_key, member) > redis_now(connection)
        assert job.get_status() == JobStatus.STARTED
        connection.set(key(job.id, "release"), 1)
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=20, what=f"job {job.id} to finish")
        assert int(connection.get(key(job.id, "runs"))) == 1
        assert attempts(job) == []
        assert connection.zcard(lease_key) == 0
        assert first.alive()
    finally:
        first.kill()
        if second is not None:
            second.stop()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_a_job_started_after_redis_lost_its_scripts_still_gets_its_lease(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker that has sent its lease script with a first job, and Redis then losing its
    # scripts (a restart without persistence, a failover, SCRIPT FLUSH)
    queue = Queue("crash", connection=connection)
    warm_up = queue.enqueue(crash_jobs.quick)
    worker = start_worker(redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    try:
        wait_until(lambda: warm_up.get_status() == JobStatus.FINISHED, timeout=20, what="the first job")
        connection.script_flush()

        # When the worker starts its next job
        job = enqueue(queue, crash_jobs.hang_first_run, policy=None)
        wait_started(connection, job, worker)

        # Then that job holds its lease all the same, and ends as usual
        lease_key = leases.leases(queue.name)
        assert connection.zcard(lease_key) == 1
        connection.set(key(job.id, "release"), 1)
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=20, what=f"job {job.id} to finish")
        assert connection.zcard(lease_key) == 0
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
        assert int(connection.get(key(job.id, "runs"))) == 1
        assert worker.alive()
        assert "had lost the lease script" in worker.output()
        assert "Traceback" not in worker.output()
    finally:
        worker.stop()


def test_the_lease_keeper_renews_only_a_job_past_its_interval_and_never_one_that_ended():
    renewed = []
    renewing, finish_renewal = threading.Event(), threading.Event()

    def renew(job, execution):
        renewed.append(job)
        renewing.set()
        finish_renewal.wait(10)

    keeper = leases.LeaseKeeper(renew, 0.2, name="test-lease-keeper")
    try:
        # A job shorter than the interval is never renewed
        keeper.arm("short job", "execution 1")
        keeper.disarm()
        time.sleep(0.5)
        assert renewed == []

        # A longer one is, once it has run for the interval
        keeper.arm("long job", "execution 2")
        wait_until(renewing.is_set, timeout=5, what="the long job's renewal")

        # When it ends while being renewed, its end waits for that renewal, and no other follows
        ending = threading.Thread(target=keeper.disarm)
        ending.start()
        ending.join(0.3)
        assert ending.is_alive()
        finish_renewal.set()
        ending.join(5)
        assert not ending.is_alive()
        time.sleep(0.5)
        assert renewed == ["long job"]
    finally:
        keeper.close()

    # And once closed, its thread is gone
    wait_until(
        lambda: "test-lease-keeper" not in [t.name for t in threading.enumerate()],
        timeout=5,
        what="the lease keeper's thread to stop",
    )


def redis_now(connection) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1e6
