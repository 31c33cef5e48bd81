"""Stopping a worker loses no job: warm shutdown finishes it, cold shutdown puts it back first in line.

Real `rq worker` subprocesses signalled by pid, for both worker classes.
"""

from __future__ import annotations

import signal
import time

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.processes import Proc, start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key
from worker import Backoff
from worker.retries.attempts import ATTEMPTS_META_KEY, retries_used
from worker.retries.backoff import POLICY_META_KEY

WORKERS = {
    "RetryWorker": "tests.worker.crash_jobs.FastRetryWorker",
    "SimpleRetryWorker": "tests.worker.crash_jobs.FastSimpleRetryWorker",
}
#: rq ignores a second shutdown signal that comes less than a second after the first.
RQ_REPEAT_SIGNAL_GUARD_SECONDS = 1.0


def start_running(connection, redis_url, tmp_path, worker_class) -> tuple[Queue, Job, Proc]:
    """A worker busy with a job that runs until released."""
    queue = Queue("shutdown", connection=connection)
    policy = Backoff(max_retries=1, base=0.05, jitter="none")
    job = queue.enqueue(crash_jobs.hang_first_run, meta={POLICY_META_KEY: policy.to_dict()})
    worker = start_worker(redis_url, ["shutdown"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    wait_until(lambda: connection.get(key(job.id, "pid")), timeout=20, what=f"job {job.id} to start")
    return queue, job, worker


def wait_for_warm_shutdown(connection, worker: Proc) -> None:
    def requested():
        assert worker.alive(), worker.output()[-3000:]
        return any(
            connection.hget(name, "shutdown_requested_date") for name in connection.smembers("rq:workers")
        )

    wait_until(requested, timeout=10, what="the worker to take the warm shutdown request")


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_warm_shutdown_finishes_the_current_job_first(connection, redis_url, tmp_path, worker_class):
    queue, job, worker = start_running(connection, redis_url, tmp_path, worker_class)
    try:
        # When the operator asks the worker to stop, once
        worker.signal(signal.SIGTERM)
        wait_for_warm_shutdown(connection, worker)
        assert worker.alive()

        # Then it finishes the job it holds, saves the result, and only then exits
        connection.set(key(job.id, "release"), 1)
        assert worker.wait(20) == 0
        assert job.get_status() == JobStatus.FINISHED
        assert int(connection.get(key(job.id, "runs"))) == 1
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    finally:
        worker.kill()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_cold_shutdown_puts_the_job_back_at_the_front_without_using_a_retry(
    connection, redis_url, tmp_path, worker_class
):
    queue, job, worker = start_running(connection, redis_url, tmp_path, worker_class)
    waiting = queue.enqueue(crash_jobs.quick)
    try:
        # When the operator signals twice (rq ignores a repeat within a second)
        worker.signal(signal.SIGTERM)
        wait_for_warm_shutdown(connection, worker)
        guard_over = time.monotonic() + RQ_REPEAT_SIGNAL_GUARD_SECONDS + 0.1
        wait_until(lambda: time.monotonic() > guard_over, timeout=5, what="rq's repeat-signal guard to pass")
        worker.signal(signal.SIGTERM)

        # Then the worker stops at once and the job waits first in line, its interruption on record
        worker.wait(20)
        assert job.get_status() == JobStatus.QUEUED
        assert queue.get_job_ids() == [job.id, waiting.id]
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
        job.refresh()
        history = job.meta[ATTEMPTS_META_KEY]
        assert [a["outcome"] for a in history] == ["interrupted"]
        assert "cold shutdown" in history[0]["message"]
        assert retries_used(job.meta) == 0

        # And the next worker runs it
        worker = start_worker(
            redis_url, ["shutdown"], tmp_path=tmp_path, worker_class=WORKERS[worker_class], name="next"
        )
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=20, what=f"job {job.id} to finish")
        assert int(connection.get(key(job.id, "runs"))) == 2
        assert not connection.exists(key(job.id, "overlap"))
    finally:
        worker.kill()
