"""`manage.py rqsignals health` as a Kubernetes or systemd probe sees it: real worker subprocesses."""

from __future__ import annotations

import signal
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rq_signals import queues
from rq_signals.jobs import run_receiver
from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from worker.keys import promoter_lease


def health(*args: str) -> str:
    """The command's output line; CommandError (exit 1 from manage.py) with its message when unhealthy."""
    out = StringIO()
    call_command("rqsignals", "health", *args, stdout=out)
    return out.getvalue().strip()


def is_healthy(*args: str) -> bool:
    try:
        health(*args)
    except CommandError:
        return False
    return True


def redis_snapshot(connection) -> dict[bytes, object]:
    """Every key with its value, to prove the probe wrote nothing."""
    dump = {}
    for key in connection.keys("*"):
        kind = connection.type(key)
        if kind == b"hash":
            dump[key] = connection.hgetall(key)
        elif kind == b"set":
            dump[key] = connection.smembers(key)
        elif kind == b"zset":
            dump[key] = connection.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            dump[key] = connection.lrange(key, 0, -1)
        else:
            dump[key] = connection.get(key)
    return dump


@pytest.fixture
def retry_worker(redis_url, tmp_path):
    worker = start_worker(
        redis_url, ["high", "default"], tmp_path=tmp_path, worker_class="worker.RetryWorker"
    )
    yield worker
    worker.stop()


def test_a_host_whose_retry_worker_heartbeats_is_healthy(retry_worker):
    wait_until(lambda: is_healthy(), timeout=15, what="the retry worker to register")

    line = health()

    assert line == f"1 worker(s) on {socket.gethostname()} serving default, high: ok"
    assert health("--queue", "high").endswith("serving high: ok")


def test_a_host_with_no_worker_is_unhealthy_and_the_probe_writes_nothing(redis_url, connection):
    with pytest.raises(CommandError, match=rf"no worker on host '{socket.gethostname()}' serves any queue"):
        health()
    with pytest.raises(CommandError, match=r"no worker on host 'elsewhere' serves queue\(s\) low"):
        health("--host", "elsewhere", "--queue", "low")

    assert connection.keys("*") == []  # not even a connection's worth of keys


def test_a_worker_killed_with_sigkill_is_reported_though_its_hash_lingers(retry_worker, connection):
    wait_until(lambda: is_healthy(), timeout=15, what="the retry worker to register")
    retry_worker.kill()

    with pytest.raises(CommandError, match=rf"\(pid {retry_worker.pid}\) is not running on this host"):
        health()


def test_a_hung_worker_whose_heartbeat_is_too_old_is_unhealthy(retry_worker, connection):
    wait_until(lambda: is_healthy(), timeout=15, what="the retry worker to register")
    retry_worker.signal(signal.SIGSTOP)  # hung: alive, but heartbeating no more
    try:
        wait_until(
            lambda: not is_healthy("--max-age", "0.5"), timeout=5, what="the heartbeat to be 0.5 s old"
        )
        before = redis_snapshot(connection)

        with pytest.raises(CommandError, match=r"last heartbeat \d+s old \(more than 0.5s\); is it hung\?"):
            health("--max-age", "0.5")

        assert redis_snapshot(connection) == before  # a probe only reads
        assert is_healthy()  # within rq's own 480 s
    finally:
        retry_worker.signal(signal.SIGCONT)


def test_retries_waiting_on_a_queue_served_only_by_a_plain_rq_worker_are_reported(
    redis_url, tmp_path, connection
):
    # Given a queue served by rq's own worker, which does not honour our retry policies
    plain = start_worker(
        redis_url, ["default"], tmp_path=tmp_path, worker_class="tests.support.upstream.RqWorker"
    )
    try:
        wait_until(lambda: is_healthy(), timeout=15, what="the plain worker to register")
        # When a retry waits in the queue's scheduled registry
        queue = queues.get_queue("default")
        queue.enqueue_in(timedelta(hours=1), run_receiver, "x", "y", {})

        # Then the probe says so, naming the queue and what to run
        with pytest.raises(CommandError) as unhealthy:
            health()
        assert str(unhealthy.value) == (
            "unhealthy: queue 'default' has 1 job(s) waiting in its scheduled registry and no retry worker "
            "serves it (no promoter of worker.RetryWorker, SimpleRetryWorker or PreforkRetryWorker holds "
            f"{promoter_lease('default')}); run one of them on 'default'"
        )
    finally:
        plain.stop()


def test_waiting_retries_are_fine_while_a_retry_worker_serves_their_queue(retry_worker, connection):
    queues.get_queue("default").enqueue_in(timedelta(hours=1), run_receiver, "x", "y", {})

    wait_until(lambda: is_healthy(), timeout=15, what="the retry worker's promoter to take the lease")

    assert connection.zcard("rq:scheduled:default") == 1


def test_an_unknown_queue_is_an_error_naming_the_configured_ones():
    with pytest.raises(CommandError, match=r"queue 'emails' is not in RQ_QUEUES \(default, high, low\)"):
        health("--queue", "emails")


def test_redis_not_answering_is_one_line_not_a_traceback(redis_server):
    redis_server.stop()  # the private server of this test session; the fixture restarts it for the next test

    with pytest.raises(CommandError, match=r"^unhealthy: Redis did not answer: ConnectionError: .*"):
        health()
