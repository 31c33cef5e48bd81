"""Job functions the benchmark workers import (by dotted path, so every worker class runs the same jobs).

Jobs that are timed from outside record `time.time()` when they start, in Redis, under keys
named here; the benchmark process reads them after the run.
"""

from __future__ import annotations

import time

from rq import get_current_job

#: Hash: job id -> seconds between the enqueue call and the job's start (latency benchmark).
LATENCY_KEY = "bench:latency"
#: Hash: job id -> `time.time()` when the failing first attempt raised (retry lateness benchmark).
FAILED_AT_KEY = "bench:failed-at"
#: Hash: job id -> `time.time()` when the second attempt started (retry lateness benchmark).
RETRIED_AT_KEY = "bench:retried-at"


class Planned(Exception):
    """The failure `fail_once` raises on purpose."""


def noop(*args: object, **kwargs: object) -> None:
    """Does nothing: the worker's own cost per job is all that is measured."""
    return None


def record_latency(enqueued_at: float) -> None:
    """Record how long after `enqueued_at` (the enqueuer's `time.time()`) this job started."""
    started = time.time()
    job = get_current_job()
    assert job is not None
    job.connection.hset(LATENCY_KEY, job.id, repr(started - enqueued_at))


def fail_once() -> None:
    """Raise on the first attempt (recording when), record the start of the second."""
    started = time.time()
    job = get_current_job()
    assert job is not None
    if job.connection.hsetnx(FAILED_AT_KEY, job.id, repr(time.time())):
        raise Planned(f"job {job.id}: planned failure")
    job.connection.hset(RETRIED_AT_KEY, job.id, repr(started))
