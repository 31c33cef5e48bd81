"""`Bookkeeping`: how the worker writes rq's per-job bookkeeping (state, heartbeats, the pop, the start).

The worker core hands these rq hooks to its bookkeeping strategy, with rq's own implementation as
`rq`. This class is rq's behaviour, unchanged: each method calls `rq`. The round-trip shortcuts in
`worker.shortcuts` are strategies that send the same writes in fewer round trips; the core works
the same without them: a subclass with `bookkeeping_class = Bookkeeping` sends rq's 20 round trips
a job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

    from worker.run import Run

Dequeued = tuple["Job", "Queue"] | None


class Bookkeeping:
    """rq's own bookkeeping; subclasses send the same writes another way (see the module docstring)."""

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker

    def bootstrap(self) -> None:
        """Before rq's bootstrap (before any horse is forked)."""

    def teardown(self) -> None:
        """As the worker stops, before rq's teardown."""

    def set_state(self, state: str, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        rq(state, pipeline=pipeline)

    def heartbeat(self, timeout: int | None, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        rq(timeout, pipeline=pipeline)

    def register_death(self, rq: Callable[[], None]) -> None:
        rq()

    def check_for_suspension(self, burst: bool, rq: Callable[[bool], None]) -> None:
        rq(burst)

    def dequeue(
        self,
        timeout: int | None,
        max_idle_time: int | None,
        rq: Callable[[int | None, int | None], Dequeued],
        rq_check_for_suspension: Callable[[bool], None],
    ) -> Dequeued:
        return rq(timeout, max_idle_time)

    def joins_start(self, run: Run) -> bool:
        """Whether `run`'s start transaction also sends what rq's `prepare_job_execution` would."""
        return False

    def queue_preparation(self, job: Job, pipeline: Pipeline[Any]) -> None:
        """What rq's `prepare_job_execution` would send, queued on the start transaction (when
        `joins_start`)."""
        raise NotImplementedError("rq's bookkeeping never joins the start")

    def prepare_job_execution(
        self, job: Job, run: Run | None, remove_from_intermediate_queue: bool, rq: Callable[..., None]
    ) -> None:
        rq(job, remove_from_intermediate_queue)

    def execution_ended(
        self, job: Job, queue: Queue, heartbeat_ttl: int, run: Run | None, rq: Callable[..., None]
    ) -> None:
        rq(job, queue, heartbeat_ttl)

    def add_to_outcome(self, job: Job, pipeline: Pipeline[Any], run: Run | None) -> None:
        """Writes owed by this strategy that go in the pipeline saving `job`'s outcome."""

    def job_ran(self) -> None:
        """`execute_job` returned normally (rq's loop heartbeats next)."""
