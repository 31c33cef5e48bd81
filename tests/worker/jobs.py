"""Job functions the worker tests enqueue; importable so forked and subprocess workers can load them.

Each run is counted in Redis (`runs_key(job_id)`) and its start time, on the Redis clock, is
appended to `starts_key(job_id)`, so a test can tell how often and when a job really ran.
"""

from __future__ import annotations

from rq import get_current_job
from rq.job import Job

from worker.exceptions import PermanentJobError


class Flaky(Exception):
    """A failure the default policy retries."""


class NotWorthRetrying(Exception):
    """A failure a test policy lists in `give_up_on`."""


def runs_key(job_id: str) -> str:
    return f"test:runs:{job_id}"


def starts_key(job_id: str) -> str:
    return f"test:starts:{job_id}"


def _count_run() -> int:
    job = get_current_job()
    assert job is not None
    seconds, micros = job.connection.time()
    with job.connection.pipeline() as pipe:
        pipe.incr(runs_key(job.id))
        pipe.rpush(starts_key(job.id), f"{seconds}.{micros:06d}")
        runs, _ = pipe.execute()
    return int(runs)


def succeed() -> str:
    _count_run()
    return "ok"


def fail_times(failures: int) -> str:
    """Raise `Flaky` on the first `failures` runs, then succeed."""
    run = _count_run()
    if run <= failures:
        raise Flaky(f"run {run} of {failures} planned failures")
    return f"ok on run {run}"


def always_fail() -> None:
    run = _count_run()
    raise Flaky(f"run {run} always fails")


def fail_permanently() -> None:
    _count_run()
    raise PermanentJobError("the payment was refused; retrying cannot help")


def fail_not_worth_retrying() -> None:
    _count_run()
    raise NotWorthRetrying("bad input")


def raise_import_error_inside() -> None:
    """The function itself loads fine; what it calls raises ImportError: an ordinary, retryable failure."""
    _count_run()
    raise ImportError("No module named 'optional_dependency'")


def current_job_id() -> str:
    job: Job | None = get_current_job()
    assert job is not None
    return job.id
