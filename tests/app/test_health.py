"""The health probe as a Kubernetes or systemd probe sees it, against real worker subprocesses.

Each story runs twice: through ``manage.py rqsignals health`` (in-process, `call_command`) and through
``python -m rq_signals.health`` (a subprocess, no ``django.setup()``); both must give the same line
and exit status.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rq_signals import queues
from rq_signals.jobs import run_receiver
from tests.support.processes import REPO_ROOT, python_env, start_worker
from tests.support.waiting import wait_until
from worker.keys import promoter_lease

MANAGE_PY = str(REPO_ROOT / "tests" / "manage.py")


@dataclass(frozen=True)
class Answer:
    """What a probe sees: the exit status and the one line (stdout when 0, else the error)."""

    code: int
    line: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def command(*args: str) -> Answer:
    """``manage.py rqsignals health``: a CommandError is manage.py's exit 1 with its message."""
    out = StringIO()
    try:
        call_command("rqsignals", "health", *args, stdout=out)
    except CommandError as exc:
        return Answer(exc.returncode, str(exc))
    return Answer(0, out.getvalue().strip())


def module(*args: str) -> Answer:
    """``python -m rq_signals.health`` in a subprocess, with the test settings (DJANGO_SETTINGS_MODULE)."""
    done = run_python("-m", "rq_signals.health", *args)
    return Answer(done.returncode, (done.stdout if done.returncode == 0 else done.stderr).strip())


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=python_env(), capture_output=True, text=True, timeout=60
    )


@pytest.fixture(params=[command, module], ids=["manage.py", "python-m"])
def health(request):
    """One of the two entry points: ``health(*args) -> Answer``."""
    return request.param


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


def test_a_host_whose_retry_worker_heartbeats_is_healthy(health, retry_worker):
    wait_until(lambda: health().ok, timeout=15, what="the retry worker to register")

    assert health() == Answer(0, f"1 worker(s) on {socket.gethostname()} serving default, high: ok")
    assert health("--queue", "high") == Answer(0, f"1 worker(s) on {socket.gethostname()} serving high: ok")


def test_a_host_with_no_worker_is_unhealthy_and_the_probe_writes_nothing(health, redis_url, connection):
    host = socket.gethostname()
    assert health() == Answer(1, f"unhealthy: no worker on host {host!r} serves any queue in RQ_QUEUES")
    assert health("--host", "elsewhere", "--queue", "low") == Answer(
        1, "unhealthy: no worker on host 'elsewhere' serves queue(s) low"
    )

    assert connection.keys("*") == []  # not even a connection's worth of keys


def test_a_worker_killed_with_sigkill_is_reported_though_its_hash_lingers(health, retry_worker, connection):
    wait_until(lambda: health().ok, timeout=15, what="the retry worker to register")
    retry_worker.kill()

    answer = health()

    assert answer.code == 1
    assert f"(pid {retry_worker.pid}) is not running on this host" in answer.line


def test_a_hung_worker_whose_heartbeat_is_too_old_is_unhealthy(health, retry_worker, connection):
    wait_until(lambda: health().ok, timeout=15, what="the retry worker to register")
    retry_worker.signal(signal.SIGSTOP)  # hung: alive, but heartbeating no more
    try:
        wait_until(lambda: not health("--max-age", "0.5").ok, timeout=5, what="the heartbeat to be 0.5 s old")
        before = redis_snapshot(connection)

        answer = health("--max-age", "0.5")

        assert answer.code == 1
        assert re.search(r"last heartbeat \d+s old \(more than 0.5s\); is it hung\?$", answer.line)
        assert redis_snapshot(connection) == before  # a probe only reads
        assert health().ok  # within rq's own 480 s
    finally:
        retry_worker.signal(signal.SIGCONT)


def test_retries_waiting_on_a_queue_served_only_by_a_plain_rq_worker_are_reported(
    health, redis_url, tmp_path, connection
):
    # Given a queue served by rq's own worker, which does not honour our retry policies
    plain = start_worker(
        redis_url, ["default"], tmp_path=tmp_path, worker_class="tests.support.upstream.RqWorker"
    )
    try:
        wait_until(lambda: health().ok, timeout=15, what="the plain worker to register")
        # When a retry waits in the queue's scheduled registry
        queue = queues.get_queue("default")
        queue.enqueue_in(timedelta(hours=1), run_receiver, "x", "y", {})

        # Then the probe says so, naming the queue and what to run
        assert health() == Answer(
            1,
            "unhealthy: queue 'default' has 1 job(s) waiting in its scheduled registry and no retry worker "
            "serves it (no promoter of worker.RetryWorker, SimpleRetryWorker or PreforkRetryWorker holds "
            f"{promoter_lease('default')}); run one of them on 'default'",
        )
    finally:
        plain.stop()


def test_waiting_retries_are_fine_while_a_retry_worker_serves_their_queue(health, retry_worker, connection):
    queues.get_queue("default").enqueue_in(timedelta(hours=1), run_receiver, "x", "y", {})

    wait_until(lambda: health().ok, timeout=15, what="the retry worker's promoter to take the lease")

    assert connection.zcard("rq:scheduled:default") == 1


def test_an_unknown_queue_is_an_error_naming_the_configured_ones(health):
    assert health("--queue", "emails") == Answer(1, "queue 'emails' is not in RQ_QUEUES (default, high, low)")


def test_a_max_age_that_is_not_positive_is_an_error(health):
    assert health("--max-age", "0") == Answer(1, "--max-age must be a number of seconds > 0, got 0.0.")


def test_redis_not_answering_is_one_line_not_a_traceback(health, redis_server):
    redis_server.stop()  # the private server of this test session; the fixture restarts it for the next test

    answer = health()

    assert answer.code == 1
    assert re.fullmatch(r"unhealthy: Redis did not answer: ConnectionError: [^\n]*", answer.line)


def test_manage_py_and_the_module_exit_alike_as_processes(redis_url):
    # Given no worker on this host
    # When both entry points run as a probe runs them
    managed = run_python(MANAGE_PY, "rqsignals", "health")
    probed = run_python("-m", "rq_signals.health")

    # Then both exit 1 with the same line on stderr (manage.py calls it a CommandError), nothing on stdout
    assert (managed.returncode, probed.returncode) == (1, 1)
    assert probed.stderr.startswith("unhealthy: no worker on host")
    assert managed.stderr.strip() == f"CommandError: {probed.stderr.strip()}"
    assert managed.stdout == probed.stdout == ""


def test_a_bad_flag_is_a_usage_error_for_both(redis_url):
    managed = run_python(MANAGE_PY, "rqsignals", "health", "--max-age", "soon")
    probed = run_python("-m", "rq_signals.health", "--max-age", "soon")

    assert (managed.returncode, probed.returncode) == (2, 2)
    for done in (managed, probed):
        assert done.stderr.splitlines()[-1].endswith("argument --max-age: invalid float value: 'soon'")


@pytest.mark.parametrize(
    ("settings", "first_words"),
    [
        (None, "rq_signals.health: Requested setting RQ_QUEUES, but settings are not configured."),
        ("nowhere.settings", "rq_signals.health: could not import the settings module 'nowhere.settings'"),
    ],
)
def test_the_module_says_in_one_line_when_it_cannot_read_the_settings(settings, first_words):
    env = {key: value for key, value in python_env().items() if key != "DJANGO_SETTINGS_MODULE"}
    if settings:
        env["DJANGO_SETTINGS_MODULE"] = settings

    done = subprocess.run(
        [sys.executable, "-m", "rq_signals.health"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 1
    assert done.stderr.startswith(first_words)
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_module_takes_the_settings_and_the_path_as_options_as_manage_py_does(redis_url, tmp_path):
    # Given a shell outside the project, with neither DJANGO_SETTINGS_MODULE nor PYTHONPATH
    env = {k: v for k, v in python_env().items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rq_signals.health",
            "--settings",
            "tests.settings",
            "--pythonpath",
            str(REPO_ROOT),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )

    # Then it read the test settings (the session's Redis, no worker there)
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: no worker on host {socket.gethostname()!r}")
