"""Which replies of a real Redis count as "unavailable, pause and retry" (`worker.safety.redis_errors`),
and a worker that meets them (``NOREPLICAS``) waits instead of dying."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from tests.support.processes import start_worker
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.worker import crash_jobs
from worker.safety.redis_errors import is_unavailable


@pytest.fixture
def server() -> Iterator[RedisServer]:
    own = RedisServer().start()
    try:
        yield own
    finally:
        own.cleanup()


@pytest.fixture
def conn(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.config_set("min-replicas-to-write", 0)
    client.close()


def raised(call) -> BaseException:
    with pytest.raises(redis.RedisError) as info:
        call()
    return info.value


def test_noreplicas_is_unavailable_alone_in_a_transaction_and_in_a_script(conn):
    conn.config_set("min-replicas-to-write", 1)
    pipe = conn.pipeline()
    pipe.set("a", 1).set("b", 2)

    assert is_unavailable(raised(lambda: conn.set("a", 1)))
    assert is_unavailable(raised(pipe.execute))
    assert is_unavailable(raised(lambda: conn.eval("return redis.call('SET', 'a', 1)", 0)))


def test_readonly_of_a_replica_is_unavailable(server, conn):
    with RedisServer(extra_args=["--replicaof", "127.0.0.1", str(server.port)]) as replica:
        assert is_unavailable(raised(lambda: redis.Redis(port=replica.port).set("a", 1)))


def test_masterdown_of_a_stale_replica_is_unavailable():
    # A replica of a master that is not there, told not to serve stale data.
    args = ["--replicaof", "127.0.0.1", "1", "--replica-serve-stale-data", "no"]
    with RedisServer(extra_args=args) as replica:
        assert is_unavailable(raised(lambda: redis.Redis(port=replica.port).get("a")))


def test_a_bad_command_and_a_full_server_are_not_unavailable(conn):
    conn.config_set("maxmemory", 1)
    try:
        assert not is_unavailable(raised(lambda: conn.set("a", "x" * 100)))  # OOM: waiting does not help
    finally:
        conn.config_set("maxmemory", 0)
    assert not is_unavailable(raised(lambda: conn.execute_command("GET")))
    conn.set("s", "text")
    assert not is_unavailable(raised(lambda: conn.lpush("s", 1)))


@pytest.mark.parametrize(
    "worker_class",
    ["tests.worker.crash_jobs.FastRetryWorker", "tests.worker.crash_jobs.FastSimpleRetryWorker"],
)
def test_a_worker_waits_out_noreplicas_and_takes_the_next_job(server, conn, tmp_path, worker_class):
    # Given a running worker
    worker = start_worker(server.url, ["noreplicas"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        wait_until(lambda: conn.scard("rq:workers"), timeout=20, what="the worker to register")
        # When the server refuses writes until a replica connects, long enough for the worker to notice
        conn.config_set("min-replicas-to-write", 1)
        conn.client_kill_filter(_type="normal", skipme=True)  # its blocking dequeue is sent again, refused
        wait_until(lambda: "NOREPLICAS" in worker.output(), timeout=20, what="the worker to meet NOREPLICAS")
        # Then it is still there, and takes jobs once writes are accepted again
        assert worker.alive(), worker.output()[-3000:]
        conn.config_set("min-replicas-to-write", 0)
        job = Queue("noreplicas", connection=conn).enqueue(crash_jobs.quick)
        wait_until(lambda: job.get_status() == JobStatus.FINISHED, timeout=30, what=f"job {job.id} to finish")
        assert worker.alive()
        assert "unhandled exception" not in worker.output()
    finally:
        worker.stop()
