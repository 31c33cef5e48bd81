"""`Runner`: how a worker runs the job it dequeued. This one is rq's own.

rq's `Worker` forks a work horse per job, its `SimpleWorker` runs the job in the worker process;
both are `Runner` here, which calls rq's implementation (`rq`) for each hook the worker core hands
it. `worker.execution.prefork.Prefork` runs jobs in one long-lived horse instead.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

ExitStatus = tuple[int | None, int | None, Any]


class Runner:
    """rq's way of running a job (a fresh horse per job, or in the worker process)."""

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker

    def started(self) -> None:
        """After rq's bootstrap (its pub/sub thread runs), before the promoter, recovery and chore threads."""

    def stopping(self) -> None:
        """As the worker stops, before rq's teardown."""

    def execute_job(self, job: Job, queue: Queue, rq: Callable[[Job, Queue], None]) -> None:
        rq(job, queue)

    def kill_horse(self, sig: signal.Signals, rq: Callable[[signal.Signals], None]) -> None:
        rq(sig)

    def wait_for_horse(self, rq: Callable[[], ExitStatus]) -> ExitStatus:
        return rq()
