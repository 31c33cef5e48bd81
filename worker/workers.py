"""The three worker classes: rq's `Worker` or `SimpleWorker` with our `WorkerCore`, nothing more.

Usable as `rq worker -w worker.RetryWorker high default low`, or through django-rq's
`RQ = {"WORKER_CLASS": "worker.RetryWorker"}`. Each is a thin variant, as rq's own worker classes are:
which rq class runs the job, how the job runs (`runner_class`) and how rq's bookkeeping is written
(`bookkeeping_class`, the round-trip shortcuts of `worker.shortcuts`). Everything else, retries,
crash safety, the job gate and the chores, is `worker.core.WorkerCore`'s.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rq.worker import SimpleWorker, Worker

from worker.bookkeeping import Bookkeeping
from worker.core import WorkerCore
from worker.execution.prefork import Prefork
from worker.execution.runner import Runner
from worker.shortcuts.lean import LeanBookkeeping
from worker.shortcuts.prefork_bookkeeping import PreforkBookkeeping


class RetryWorker(WorkerCore, Worker):
    """rq's forking worker (a fresh work horse per job) with our retry policy and crash recovery."""

    bookkeeping_class: ClassVar[type[Bookkeeping]] = LeanBookkeeping


class SimpleRetryWorker(WorkerCore, SimpleWorker):
    """rq's SimpleWorker (jobs run in the worker process) with our retry policy and crash recovery."""

    bookkeeping_class: ClassVar[type[Bookkeeping]] = LeanBookkeeping


class PreforkRetryWorker(WorkerCore, Worker):
    """A long-lived forked work horse runs job after job (`worker.execution.prefork`), with our retry
    policy and crash recovery: crash isolation without a fork per job."""

    bookkeeping_class: ClassVar[type[Bookkeeping]] = PreforkBookkeeping
    runner_class: ClassVar[type[Runner]] = Prefork

    #: Jobs one horse runs before it is replaced by a fresh one.
    max_jobs_per_horse: int = 500
    #: Resident memory, in MB, above which a horse is replaced after its job; None: no limit.
    max_horse_rss_mb: float | None = 1024.0
    #: Seconds past a job's timeout before the worker kills a horse that rq's death penalty did not stop.
    horse_kill_grace_seconds: float = 60.0
    #: Seconds within which a repeated heartbeat, state write or suspension check is skipped.
    bookkeeping_coalesce_seconds: float = 0.25

    def __init__(
        self,
        *args: Any,
        max_jobs_per_horse: int | None = None,
        max_horse_rss_mb: float | None = None,
        horse_kill_grace_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        if max_jobs_per_horse is not None:
            self.max_jobs_per_horse = max_jobs_per_horse
        if max_horse_rss_mb is not None:
            self.max_horse_rss_mb = max_horse_rss_mb
        if horse_kill_grace_seconds is not None:
            self.horse_kill_grace_seconds = horse_kill_grace_seconds
        super().__init__(*args, **kwargs)


__all__ = ["PreforkRetryWorker", "RetryWorker", "SimpleRetryWorker"]
