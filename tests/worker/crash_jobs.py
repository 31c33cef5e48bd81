"""Jobs and worker classes for the crash, shutdown and reconnect tests; importable by subprocess workers.

A job reports through Redis what the test needs to see: how often it ran (`runs`), the pid of the
process running it (`pid`, the work horse under `RetryWorker`), and whether a run began while the
process of an earlier run was still alive (`overlap`). `hang_first_run` blocks its first run until
the test sets `release`, so a test can crash, signal or cut off the worker while the job runs.
"""

from __future__ import annotations

import os
import time

import psutil
from rq import get_current_job
from rq.job import Job

from worker.workers import RetryWorker, SimpleRetryWorker

#: Longest a job waits for its release, seconds: a bound, not a timing the tests rely on.
RELEASE_WAIT_SECONDS = 60.0


def key(job_id: str, what: str) -> str:
    return f"test:crash:{job_id}:{what}"


def _current() -> Job:
    job = get_current_job()
    assert job is not None
    return job


def hang_first_run() -> str:
    """Block the first run until `key(id, "release")` is set; later runs return at once."""
    job = _current()
    conn = job.connection
    run = int(conn.incr(key(job.id, "runs")))
    previous = conn.getset(key(job.id, "pid"), os.getpid())
    if previous is not None and is_running(int(previous)):
        conn.set(key(job.id, "overlap"), int(previous))
    if run == 1:
        deadline = time.monotonic() + RELEASE_WAIT_SECONDS
        while not conn.exists(key(job.id, "release")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id}: never released")
            time.sleep(0.02)
    return f"done on run {run}"


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie awaiting its parent)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def quick() -> str:
    job = _current()
    job.connection.incr(key(job.id, "runs"))
    return "quick"


class FastRetryWorker(RetryWorker):
    """`RetryWorker` with a 4 s lease (heartbeat every second) and a scan every half second."""

    lease_ttl = 4.0
    recovery_interval = 0.5


class FastSimpleRetryWorker(SimpleRetryWorker):
    """`SimpleRetryWorker` with the same short lease and scan."""

    lease_ttl = 4.0
    recovery_interval = 0.5
