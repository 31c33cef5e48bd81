"""A worker exits promptly when it is done: after a burst's last job and after a warm shutdown.

redis-py 8.2.0 made `PubSubWorkerThread.stop()` join the pub/sub thread until it exits; with rq's
60 s blocking read that held every worker exit for up to a minute (issue 11). Each class runs as a
real `rq worker` subprocess; `make test` runs this on the pinned redis-py and its newest pass on
the newest release.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.worker import Worker, WorkerStatus

from tests.support.processes import Proc, start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key

CLASSES = ["worker.RetryWorker", "worker.SimpleRetryWorker", "worker.PreforkRetryWorker"]
#: Longest a worker may take to exit once it has nothing left to do, in seconds (the hang was 60 s).
EXIT_BOUND_SECONDS = 1.0


def seconds_to_exit(worker: Proc, since: float) -> float:
    """Wait (bounded) for the worker to exit cleanly; the seconds it took after `since` (monotonic)."""
    code = worker.wait(30)
    took = time.monotonic() - since
    assert code == 0, worker.output()[-3000:]
    return took


def is_idle(connection: redis.Redis) -> bool:
    return [w.get_state() for w in Worker.all(connection=connection)] == [WorkerStatus.IDLE]


def describe(took: float) -> str:
    return f"exited {took:.2f}s after it was done (redis-py {redis.__version__}); bound {EXIT_BOUND_SECONDS}s"


@pytest.mark.parametrize("worker_class", CLASSES)
def test_a_burst_worker_exits_within_a_second_of_done_quitting(connection, redis_url, tmp_path, worker_class):
    # Given a queue with one quick job
    job = Queue("exit", connection=connection).enqueue(crash_jobs.quick)

    # When a burst worker runs it
    worker = start_worker(redis_url, ["exit"], tmp_path=tmp_path, worker_class=worker_class, burst=True)
    try:
        wait_until(
            lambda: "done, quitting" in worker.output(), timeout=30, what="the worker to say it is done"
        )
        done = time.monotonic()

        # Then the process is gone within the bound, its job finished
        took = seconds_to_exit(worker, done)
        assert took < EXIT_BOUND_SECONDS, describe(took)
        assert job.get_status() == JobStatus.FINISHED
    finally:
        worker.kill()


@pytest.mark.parametrize("worker_class", CLASSES)
def test_an_idle_worker_exits_within_a_second_of_sigterm(connection, redis_url, tmp_path, worker_class):
    # Given a worker waiting on an empty queue
    worker = start_worker(redis_url, ["exit"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        # (rq installs its signal handlers after bootstrap, then goes idle on the queue)
        wait_until(lambda: is_idle(connection), timeout=30, what="the worker to wait for jobs")

        # When the operator asks it to stop, once
        asked = time.monotonic()
        worker.signal(signal.SIGTERM)

        # Then it is gone within the bound
        took = seconds_to_exit(worker, asked)
        assert took < EXIT_BOUND_SECONDS, describe(took)
    finally:
        worker.kill()


@pytest.mark.parametrize("worker_class", CLASSES)
def test_a_warm_shutdown_exits_within_a_second_of_the_job_ending(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker busy with a job that runs until released
    job = Queue("exit", connection=connection).enqueue(crash_jobs.hang_first_run)
    worker = start_worker(redis_url, ["exit"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        wait_until(lambda: connection.get(key(job.id, "pid")), timeout=30, what=f"job {job.id} to start")

        # When the operator asks it to stop, and the job then ends
        worker.signal(signal.SIGTERM)
        wait_until(lambda: "shut down" in worker.output(), timeout=10, what="the worker to take the request")
        connection.set(key(job.id, "release"), 1)
        ended = wait_until(
            lambda: job.get_status() == JobStatus.FINISHED and time.monotonic(),
            timeout=30,
            what=f"job {job.id} to finish",
        )

        # Then the worker is gone within the bound of the job's end
        took = seconds_to_exit(worker, ended)
        assert took < EXIT_BOUND_SECONDS, describe(took)
    finally:
        worker.kill()
