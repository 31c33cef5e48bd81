"""Fixtures of the rq_signals app tests: our queues on the private Redis, and real worker subprocesses."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection as db_connection

from rq_signals import queues, registration
from tests.support.processes import REPO_ROOT, Proc
from tests.support.waiting import wait_until
from worker.retries.scheduler import promote_due

QUEUE_NAMES = ("high", "default", "low")


@pytest.fixture(autouse=True)
def fresh_queues(redis_url: str) -> Iterator[None]:
    """Every test starts with an empty private Redis and our queue cache rebuilt against it."""
    queues.reset()
    yield
    queues.reset()


@pytest.fixture
def queued(connection: redis.Redis) -> Callable[[str], list[str]]:
    """The ids of the jobs waiting on a queue, oldest first."""

    def job_ids(queue: str) -> list[str]:
        return [raw.decode() for raw in connection.lrange(f"rq:queue:{queue}", 0, -1)]

    return job_ids


@pytest.fixture
def run_worker(tmp_path: Path) -> Callable[..., str]:
    """Run `manage.py rqworker --burst` subprocesses until no job is queued or due for retry; their logs.

    A burst worker quits when its queues are empty, which may be before a retry it scheduled is
    promoted; between bursts the test promotes due retries itself (as `worker.retries.promoter` would).
    """

    def run(*extra_args: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        rq_queues = [queues.get_queue(name) for name in QUEUE_NAMES]
        logs = [_burst(tmp_path, extra_args, timeout)]
        while True:
            promotion = promote_due(rq_queues[0].connection, rq_queues)
            # A burst worker may put a due retry back on its queue just after deciding to quit.
            queued = any(queue.count for queue in rq_queues)
            if not (promotion.moved or queued) and all(due is None for due in promotion.queue_due):
                return "\n".join(logs)
            if not (promotion.moved or queued):
                wait_until(
                    lambda: promote_due(rq_queues[0].connection, rq_queues).moved,
                    timeout=max(0.1, deadline - time.monotonic()),
                    what="a scheduled retry to be due",
                )
            logs.append(_burst(tmp_path, extra_args, max(1.0, deadline - time.monotonic())))

    return run


def _burst(tmp_path: Path, extra_args: tuple[str, ...], timeout: float) -> str:
    args = [
        sys.executable,
        str(REPO_ROOT / "tests" / "manage.py"),
        "rqworker",
        "--burst",
        "--worker-class",
        "worker.SimpleRetryWorker",
        *extra_args,
        *QUEUE_NAMES,
    ]
    env = {
        # PostgreSQL: pytest-django's test database, which the subprocess's settings cannot guess.
        "RQ_SIGNALS_TEST_DB_NAME": str(db_connection.settings_dict["NAME"]),
        "RQ_SIGNALS_TEST_EMAIL_DIR": str(tmp_path / "mail"),
    }
    proc = Proc(args, env=env, log_path=tmp_path / f"worker-{len(list(tmp_path.glob('worker-*')))}.log")
    code = proc.wait(timeout)
    output = proc.log_path.read_text(errors="replace")
    assert code == 0, f"rqworker exited with {code}:\n{output[-3000:]}"
    return output


@pytest.fixture
def mailbox(tmp_path: Path) -> Callable[[], list[str]]:
    """The emails the worker subprocess sent (file-based backend), as text."""

    def messages() -> list[str]:
        folder = tmp_path / "mail"
        return [path.read_text() for path in sorted(folder.glob("*"))] if folder.exists() else []

    return messages


@pytest.fixture
def forget_registrations():
    """Undo the registrations and connections a test makes."""
    before = dict(registration._registry)
    yield
    for receiver_id, declared in list(registration._registry.items()):
        if receiver_id not in before:
            for ref in declared.signals:
                ref.signal.disconnect(sender=declared.sender, dispatch_uid=declared.dispatch_uid)
    registration._registry.clear()
    registration._registry.update(before)
