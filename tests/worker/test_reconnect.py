"""Redis goes away and comes back: the worker waits, reconnects and goes on; no accepted job is lost.

Each test runs its own persistent (AOF, fsync always) redis-server on its own port, so stopping it
touches no other test, and a real `rq worker` subprocess against it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from tests.support.processes import Proc, start_worker
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from tests.worker.crash_jobs import key

WORKERS = {
    "RetryWorker": "tests.worker.crash_jobs.FastRetryWorker",
    "SimpleRetryWorker": "tests.worker.crash_jobs.FastSimpleRetryWorker",
}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    own = RedisServer(persistent=True).start()
    try:
        yield own
    finally:
        own.cleanup()


@pytest.fixture
def conn(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def worker_waiting_for_redis(server: RedisServer, worker: Proc, *, at_least: float) -> None:
    """Stop Redis; keep it down until the worker has noticed and `at_least` seconds have passed."""
    server.stop()
    down_since = time.monotonic()

    def noticed_long_enough():
        assert worker.alive(), worker.output()[-3000:]
        return "Redis unavailable" in worker.output() and time.monotonic() - down_since > at_least

    wait_until(noticed_long_enough, timeout=30, what="the worker to wait out the outage")
    server.start()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_idle_worker_rides_out_an_outage_and_takes_the_next_job(server, conn, tmp_path, worker_class):
    worker = start_worker(server.url, ["reconnect"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    try:
        wait_until(lambda: conn.scard("rq:workers"), timeout=20, what="the worker to register")

        worker_waiting_for_redis(server, worker, at_least=1.0)

        job = Queue("reconnect", connection=conn).enqueue(crash_jobs.quick)
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=30, what=f"job {job.id} to finish")
        assert worker.alive()
        assert "unhandled exception" not in worker.output()
    finally:
        worker.stop()


@pytest.mark.parametrize("worker_class", sorted(WORKERS))
def test_job_running_through_an_outage_shorter_than_its_fence_completes_once(
    server, conn, tmp_path, worker_class
):
    # (An outage longer than lease_ttl - fence_margin stops the run: tests/worker/test_fencing.py.)
    # Given a worker in the middle of a job
    queue = Queue("reconnect", connection=conn)
    job = queue.enqueue(crash_jobs.hang_first_run)
    worker = start_worker(server.url, ["reconnect"], tmp_path=tmp_path, worker_class=WORKERS[worker_class])
    try:
        wait_until(lambda: conn.get(key(job.id, "pid")), timeout=20, what=f"job {job.id} to start")

        # When Redis is down across a renewal or two, then back
        worker_waiting_for_redis(server, worker, at_least=1.0)
        conn.set(key(job.id, "release"), 1)

        # Then the job completes, once, on the worker that had it, and the worker goes on
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=30, what=f"job {job.id} to finish")
        assert int(conn.get(key(job.id, "runs"))) == 1
        assert queue.started_job_registry.get_job_ids(cleanup=False) == []
        after = queue.enqueue(crash_jobs.quick)
        wait_until(
            lambda: after.get_status() == JobStatus.FINISHED, timeout=20, what=f"job {after.id} to finish"
        )
        assert worker.alive()
        assert "unhandled exception" not in worker.output()
    finally:
        worker.stop()


@pytest.mark.parametrize("worker_class", ["RetryWorker", "SimpleRetryWorker", "PreforkRetryWorker"])
def test_the_callers_own_client_still_raises_while_redis_is_down(server, worker_class):
    # Given a program that builds a worker in-process on its own Redis client
    import worker

    client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
    built = getattr(worker, worker_class)([Queue("default", connection=client)], connection=client)
    # Then the worker and its queues wait out outages on a client of their own
    assert built.connection is not client
    assert all(queue.connection is built.connection for queue in built.queues)
    # And the program's client behaves as redis-py's always does: with Redis down, it raises
    server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    client.close()
