"""Job functions (and small worker subclasses) for the prefork worker tests.

Importable by the worker subprocesses the tests start. Jobs that must be watched from outside
record their process id in Redis under `pid_key(job_id)`, and jobs that must be held open wait
for `release_key(job_id)` to exist.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from rq import get_current_job

from worker import PreforkRetryWorker

#: Held by `leak_megabytes`: memory a job leaks on purpose, as module state survives between jobs.
_LEAKED: list[bytes] = []


def pid_key(job_id: str) -> str:
    return f"test:prefork:pid:{job_id}"


def release_key(job_id: str) -> str:
    return f"test:prefork:release:{job_id}"


def noop() -> None:
    return None


def horse_pid() -> int:
    """The pid of the process running the job."""
    return os.getpid()


def exit_hard() -> None:
    os._exit(1)


def segfault() -> None:
    ctypes.string_at(0)


def exit_on_first_run() -> int:
    """Kill the process running it on its first run; return that process's pid on later runs."""
    job = get_current_job()
    assert job is not None
    if job.connection.incr(f"test:prefork:runs:{job.id}") == 1:
        os._exit(1)
    return os.getpid()


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


def hang_ignoring_alarm(seconds: float) -> None:
    """Sleep with SIGALRM blocked, so rq's death penalty cannot interrupt it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)


def block_alarm() -> int:
    """Block SIGALRM (rq's death penalty) in the process running it, and return its pid."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    return os.getpid()


def leak_megabytes(megabytes: int) -> int:
    """Keep `megabytes` of touched memory alive after the job returns."""
    _LEAKED.append(b"x" * (megabytes * 1024 * 1024))
    return os.getpid()


def wait_for_release(timeout: float = 20.0) -> int:
    """Publish this process's pid, then wait (at most `timeout` s) until the test releases the job."""
    job = get_current_job()
    assert job is not None
    job.connection.set(pid_key(job.id), os.getpid())
    deadline = time.monotonic() + timeout
    while not job.connection.exists(release_key(job.id)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.id} was not released within {timeout}s")
        time.sleep(0.01)
    return os.getpid()


class QuickPreforkWorker(PreforkRetryWorker):
    """Small limits so a test sees horses replaced: 3 jobs per horse, 1 s grace after a timeout."""

    max_jobs_per_horse = 3
    horse_kill_grace_seconds = 1.0


class LowMemoryPreforkWorker(PreforkRetryWorker):
    """A horse whose RSS passes 150 MB is replaced after its job."""

    max_horse_rss_mb = 150.0
