"""`worker.events`: code outside the worker hears a job's start, retry, final failure and recovery, and
nothing it does there changes the job or costs a Redis round trip.

The subprocess workers of `tests.worker.event_workers` journal every moment to Redis, beside a hook
that raises on every moment.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta

import pytest
from rq import Queue
from rq.job import JobStatus

from tests.support.processes import start_worker
from tests.support.round_trips import fail, per_job
from tests.worker import crash_jobs, jobs
from tests.worker.crash_jobs import wait_started
from tests.worker.event_workers import JOURNAL_KEY
from tests.worker.retry_support import attempts, enqueue, settle
from worker import Backoff, SimpleRetryWorker, events
from worker.keys import metrics as metrics_key
from worker.metrics import SEP

WORKERS = (
    "tests.worker.event_workers.JournalingSimpleRetryWorker",
    "tests.worker.event_workers.JournalingRetryWorker",
)


def journal(connection, job_id: str) -> list[dict]:
    entries = [json.loads(raw) for raw in connection.lrange(JOURNAL_KEY, 0, -1)]
    return [entry for entry in entries if entry["job_id"] == job_id]


@pytest.mark.parametrize("worker_class", WORKERS)
def test_a_job_that_runs_out_of_retries_is_heard_starting_retrying_and_exhausted(
    connection, redis_url, tmp_path, worker_class
):
    # Given a job that always fails, allowed one retry 0.05 s later, and a job without a policy
    queue = Queue("events", connection=connection)
    job = enqueue(queue, jobs.always_fail, policy=Backoff(max_retries=1, base=0.05, jitter="none"))
    plain = enqueue(queue, jobs.always_fail, policy=None)

    # When a worker runs them, in a process whose hooks journal every moment (and one raises)
    worker = start_worker(redis_url, ["events"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        assert settle(connection, queue, job, timeout=30) == JobStatus.FAILED
        assert settle(connection, queue, plain, timeout=30) == JobStatus.FAILED
    finally:
        worker.stop()

    # Then each moment was heard once, in order, with its attempt number
    heard = journal(connection, job.id)
    assert [(entry["moment"], entry["attempt"]) for entry in heard] == [
        ("started", 1),
        ("retrying", 1),
        ("started", 2),
        ("exhausted", 2),
    ]
    started, retrying, _, exhausted = heard
    assert 0 <= started["wait"] < 30
    first = attempts(job)[0]
    assert retrying["delay"] == 0.05 and retrying["exception"] == "Flaky"
    assert datetime.fromisoformat(retrying["retry_at"]) == datetime.fromisoformat(
        first["ended_at"]
    ) + timedelta(seconds=0.05)
    assert exhausted["exception"] == "Flaky"
    # ... a job rq handles alone (no policy) is heard failing for good too
    assert [(entry["moment"], entry["attempt"]) for entry in journal(connection, plain.id)] == [
        ("started", 1),
        ("exhausted", 1),
    ]
    # ... and the hook that raised on every moment is logged, the jobs' outcomes unchanged
    assert [attempt["outcome"] for attempt in attempts(job)] == ["retrying", "failed"]
    assert (
        f"Job {job.id}: exhausted hook tracker_down raised RuntimeError: error tracker down"
        in worker.output()
    )


@pytest.fixture
def no_hooks():
    """No hook connected in this process (the Django app's, connected by its ready(), put back after)."""
    connected = {moment: events.hooks(moment) for moment in events.MOMENTS}
    for moment, hooks in connected.items():
        for hook in hooks:
            events.disconnect(moment, hook)
    yield
    for moment, hooks in connected.items():
        for hook in hooks:
            events.connect(moment, hook)


def test_a_killed_work_horse_is_heard_as_a_retry_and_counted_as_a_crash(connection, redis_url, tmp_path):
    # Given a RetryWorker whose work horse runs a job (its first run hangs)
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    worker = start_worker(redis_url, ["crash"], tmp_path=tmp_path, worker_class=WORKERS[1])
    try:
        horse_pid = wait_started(connection, job, worker)

        # When the kernel kills the horse
        os.kill(horse_pid, signal.SIGKILL)

        # Then its own worker retries the job, which is heard, and counted as a crash
        assert settle(connection, queue, job, timeout=30) == JobStatus.FINISHED
    finally:
        worker.stop()
    heard = journal(connection, job.id)
    assert [(entry["moment"], entry["attempt"]) for entry in heard] == [
        ("started", 1),
        ("retrying", 1),
        ("started", 2),
    ]
    assert heard[1]["exception"] == "WorkerCrashed" and heard[1]["pid"] == worker.pid
    assert counted(connection, "crash", "hang_first_run") == {
        "attempts|retrying": 1,
        "attempts|succeeded": 1,
        "crashes": 1,
    }


@pytest.mark.parametrize("worker_class", WORKERS)
def test_a_killed_workers_job_is_heard_as_recovered_by_the_worker_that_took_it(
    connection, redis_url, tmp_path, worker_class
):
    # Given a worker running a job (its first run hangs), and a second worker on the same queue
    queue = Queue("crash", connection=connection)
    job = enqueue(queue, crash_jobs.hang_first_run, policy=Backoff(max_retries=2, base=0.05, jitter="none"))
    first = start_worker(redis_url, ["crash"], tmp_path=tmp_path, worker_class=worker_class, name="first")
    second = None
    try:
        wait_started(connection, job, first)
        second = start_worker(
            redis_url, ["crash"], tmp_path=tmp_path, worker_class=worker_class, name="second"
        )

        # When the first worker is killed outright
        first.kill()

        # Then the second takes the job over, says so, and runs it to completion
        assert settle(connection, queue, job, timeout=60) == JobStatus.FINISHED
    finally:
        first.kill()
        if second is not None:
            second.stop()
    heard = journal(connection, job.id)
    assert [(entry["moment"], entry["attempt"]) for entry in heard] == [
        ("started", 1),
        ("recovered", 1),
        ("retrying", 1),
        ("started", 2),
    ]
    recovered = heard[1]
    assert recovered["pid"] == second.pid and recovered["exception"] == "WorkerCrashed"
    assert recovered["outcome"] == "retrying" and recovered["dead_worker"] != "?"
    assert counted(connection, "crash", "hang_first_run") == {
        "attempts|retrying": 1,
        "attempts|succeeded": 1,
        "crashes": 1,
    }


def counted(connection, queue: str, function: str) -> dict[str, float]:
    """The attempts and crashes `worker.metrics` counted for `function`'s jobs on `queue`."""
    prefix = f"tests.worker.crash_jobs.{function}{SEP}"
    fields = {field.decode(): float(value) for field, value in connection.hgetall(metrics_key(queue)).items()}
    return {
        field.removeprefix(prefix).replace(SEP, "|"): value
        for field, value in fields.items()
        if field.startswith(prefix) and ("attempts" in field or "crashes" in field)
    }


def test_hooks_on_every_moment_add_no_round_trip(redis_url, tmp_path, no_hooks):
    # Given what a failing job costs a worker in round trips with no hook connected
    (tmp_path / "bare").mkdir()
    (tmp_path / "hooked").mkdir()
    bare = per_job(SimpleRetryWorker, redis_url, tmp_path / "bare", func=fail)
    heard: list[str] = []
    hooks = {
        moment: (lambda job, moment=moment, **details: heard.append(moment)) for moment in events.MOMENTS
    }

    # When hooks listen to every moment
    for moment, hook in hooks.items():
        events.connect(moment, hook)
    try:
        hooked = per_job(SimpleRetryWorker, redis_url, tmp_path / "hooked", func=fail)
    finally:
        for moment, hook in hooks.items():
            events.disconnect(moment, hook)

    # Then they heard every job start and fail for good, and the worker's round trips are the same
    assert heard.count("started") == heard.count("exhausted") == 5 + 25
    assert (hooked.round_trips, hooked.commands) == (bare.round_trips, bare.commands)


def test_a_hook_is_connected_once_and_an_unknown_moment_is_refused():
    def hook(job, **details):
        pass

    events.connect("started", hook)
    events.connect("started", hook)
    try:
        assert events.disconnect("started", hook) is True
        assert events.disconnect("started", hook) is False
    finally:
        events.disconnect("started", hook)
    with pytest.raises(
        ValueError, match="Unknown worker moment 'finished'; the moments are started, retrying"
    ):
        events.connect("finished", hook)  # type: ignore[arg-type]
