"""Maintenance chores: a framework registers them once, every worker runs them when due, and a failing one
never stops the worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.processes import start_worker
from worker import SimpleRetryWorker
from worker.maintenance.chores import (
    register_maintenance,
    registered_maintenance,
    run_due_maintenance,
    unregister_maintenance,
)


@pytest.fixture
def chores() -> Iterator[list[str]]:
    """Names registered by the test, unregistered after it (the registry is per process)."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_maintenance(name)


def test_a_chore_runs_at_once_then_only_when_its_interval_has_passed(chores):
    calls: list[float] = []
    chores.append(register_maintenance(lambda: calls.append(time.monotonic()), 0.2, name="tests.tick"))

    assert "tests.tick" in run_due_maintenance()  # due as soon as it is registered
    assert "tests.tick" not in run_due_maintenance()  # not again before 0.2s
    time.sleep(0.25)
    assert "tests.tick" in run_due_maintenance()
    assert len(calls) == 2
    assert registered_maintenance()["tests.tick"] == 0.2


def test_registering_a_name_again_replaces_the_chore(chores):
    calls: list[str] = []
    chores.append(register_maintenance(lambda: calls.append("old"), 60, name="tests.relay"))
    register_maintenance(lambda: calls.append("new"), 60, name="tests.relay")

    run_due_maintenance(force=True)

    assert calls == ["new"]


def test_a_failing_chore_is_logged_by_name_and_the_others_still_run(chores, caplog):
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("database is down")

    chores.append(register_maintenance(broken, 60, name="tests.broken"))
    chores.append(register_maintenance(lambda: calls.append("ran"), 60, name="tests.fine"))

    with caplog.at_level(logging.ERROR, logger="worker.maintenance.chores"):
        ran = run_due_maintenance(force=True)

    assert {"tests.broken", "tests.fine"} <= set(ran)
    assert calls == ["ran"]
    assert "Maintenance tests.broken: failed; next try in 60.0s" in caplog.text
    assert "RuntimeError: database is down" in caplog.text


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_an_interval_must_be_a_positive_number_of_seconds(interval):
    with pytest.raises(ValueError, match="interval_seconds must be > 0"):
        register_maintenance(lambda: None, interval)


class ChoreWorker(SimpleRetryWorker):
    """A worker whose process registered one chore: it marks a Redis key each time it runs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        connection = self.connection
        register_maintenance(lambda: connection.incr("tests:chore-runs"), 60, name="tests.chore")


def test_a_burst_worker_runs_the_chores_before_its_first_job(redis_url, connection: redis.Redis, tmp_path):
    worker = start_worker(
        redis_url,
        ["default"],
        tmp_path=tmp_path,
        worker_class="tests.worker.test_hooks.ChoreWorker",
        burst=True,
    )

    assert worker.wait(30) == 0, worker.output()[-2000:]
    assert connection.get("tests:chore-runs") == b"1"
