"""Crash recovery as an operator sees it: a worker dies mid-job (kill -9, OOM) and the job is not lost.

Real redis-server, real `rq worker` subprocesses killed by pid. The workers use a 5 s lease
(`tests.worker.crash_jobs`), so detection takes seconds; every wait is bounded by the 60 s the
guarantee promises.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus

from tests.support.processes import Proc, start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key
from worker import Backoff, leases
from worker.attempts import ATTEMPTS_META_KEY
from worker.backoff import POLICY_META_KEY
from worker.scheduler import promote_due

DETECTION_BOUND_SECONDS = 60.0
WORKERS = {
    "RetryWorker": "tests.worker.crash_jobs.FastRetryWorker",
    "SimpleRetryWorker": "tests.worker.crash_jobs.FastSimpleRetryWorker",
}


def enqueue(queue: Queue, func, *, policy: Backoff | None) -> Job:
    meta = {POLICY_META_KEY: policy.to_dict()} if policy is not None else {}
    return queue.enqueue(func, meta=meta)


def attempts(job: Job) -> list[dict]:
    job.refresh()
    return list(job.meta.get(ATTEMPTS_META_KEY, []))


def wait_started(connection, job: Job, proc: Proc) -> int:
    """Wait for the job's first run to begin; the pid of the process running it."""

    def started():
        assert proc.alive(), proc.output()[-3000:]
        return connection.get(key(job.id, "pid"))

    return int(wait_until(started, timeout=20, what=f"job {job.id} to start"))


def gone(pid: int) -> bool:
    return not crash_jobs.is_running(pid)


def settle(connection, queue: Queue, job: Job, *, timeout: float) -> JobStatus:
    """Promote due retries (as the retry promoter does) until the job finished or failed for good."""

    def settled():
        promote_due(connection, [queue])
        status = job.get_status()
        return status if status in (JobStatus.FINISHED, JobStatus.FAILED) else None

    return wait_until(settled, timeout=timeout, what=f"job {job.id} to finish or fail", interval=0.05)


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
def test_a_worker_cut_off_longer_than_its_lease_stops_its_run_once_it_is_back(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker, reaching Redis through a link that breaks mid-job for longer than the lease
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    link = crash_jobs.Partition(connection.connection_pool.connection_kwargs["port"])
    first = start_worker(
        link.url(), ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="first"
    )
    second = None
    try:
        runner_pid = wait_started(connection, job, first)
        link.cut()
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="second"
        )

        # When another worker has recovered and finished the job, and the link comes back
        assert settle(connection, queue, job, timeout=DETECTION_BOUND_SECONDS) == JobStatus.FINISHED
        link.mend()

        # Then the first worker finds its lease claimed and stops its own run (a RetryWorker kills its
        # horse and goes on; a SimpleRetryWorker, whose job runs in it, exits), leaving the job alone
        wait_until(
            lambda: gone(runner_pid), timeout=20, what=f"the first worker to stop its run {runner_pid}"
        )
        assert "another worker recovered the job" in first.output()
        if worker_class == "RetryWorker":
            assert first.alive()
        else:
            assert first.wait(10) == 1
        assert job.get_status() == JobStatus.FINISHED
        assert [a["outcome"] for a in attempts(job)] == ["retrying", "succeeded"]
        assert int(connection.get(key(job.id, "runs"))) == 2
    finally:
        link.mend()
        first.kill()
        if second is not None:
            second.stop()
        link.close()


def test_of_several_workers_racing_for_one_dead_job_exactly_one_claims_it(connection):
    # Given a job whose worker stopped renewing its lease: a lease that has just run out
    queue = Queue("crash", connection=connection)
    member = "job-1:execution-1"
    with connection.pipeline() as pipeline:
        pipeline.zadd(queue.started_job_registry.key, {member: time.time() + 60})
        leases.add_lease(pipeline, queue.name, member, ttl=0.001)
        pipeline.execute()
    wait_until(
        lambda: leases.expired_members(connection, queue.name) == [member],
        timeout=5,
        what="the lease to run out",
    )

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
