"""What the two bookkeeping strategies of `worker.shortcuts` share: the one-trip dequeue, the start
transaction that also carries rq's preparation of the job, the client info resolved once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.job import Job
from rq.utils import now
from rq.worker import BaseWorker

from worker.bookkeeping import Bookkeeping, Dequeued
from worker.rq_compat import layout as rq_layout
from worker.shortcuts.dequeue import OneTripDequeue, class_attr

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

    from worker.run import Run

_RQ_PERFORM_JOB = BaseWorker.__dict__["perform_job"]


def _driver_info_resolver() -> Any:
    """redis-py's `resolve_driver_info(driver_info=, lib_name=, lib_version=)`, all keywords optional,
    or None where this redis-py has no such function: before 7.2 there is no `redis.driver_info`,
    and in 7.2.0 and 7.3.0 its three arguments are required (so: its signature, not a version number)."""
    try:
        from redis.driver_info import resolve_driver_info  # redis-py 7.2+ only: optional here
    except ImportError:
        return None
    parameters = inspect.signature(resolve_driver_info).parameters.values()
    if any(parameter.default is inspect.Parameter.empty for parameter in parameters):
        return None
    return resolve_driver_info


_RESOLVE_DRIVER_INFO = _driver_info_resolver()


def share_driver_info(connection: Redis[Any]) -> None:
    """Resolve once the client name and version that every connection of `connection`'s pool sends
    (`CLIENT SETINFO`), as redis-py would for each: a connection made later, here or in a horse
    forked from here, reuses it instead of reading the redis package's metadata from disk.

    With a redis-py that cannot take it (`_driver_info_resolver`), nothing is shared: each connection
    resolves its client info itself, as redis-py does without us; the commands sent are the same."""
    if _RESOLVE_DRIVER_INFO is None:
        return
    kwargs = connection.connection_pool.connection_kwargs
    if "driver_info" not in kwargs:  # else given, resolved already (or None: no CLIENT SETINFO)
        given = {name: kwargs[name] for name in ("lib_name", "lib_version") if name in kwargs}
        kwargs["driver_info"] = _RESOLVE_DRIVER_INFO(**given)


def runs_rq_perform_job(worker: BaseWorker) -> bool:
    """Whether `worker` runs jobs with rq's own `perform_job`, the one known to call
    `prepare_job_execution` first thing (so that its writes may go ahead with the start's)."""
    return class_attr(type(worker), "perform_job") is _RQ_PERFORM_JOB


def queue_job_preparation(worker: BaseWorker, job: Job, pipeline: Pipeline[Any]) -> None:
    """What rq's `prepare_job_execution` sends for `job` (in the horse, or in SimpleWorker), queued on
    `pipeline`, and the job always taken off its queue's intermediate list."""
    # rq's own heartbeat, not a mixin's: rq calls it from the horse, so this is not a call of the worker's.
    heartbeat_ttl = worker.get_heartbeat_ttl(job)
    BaseWorker.heartbeat(worker, heartbeat_ttl, pipeline=pipeline)
    job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
    job.prepare_for_execution(worker.name, pipeline=pipeline)
    rq_layout.queue_start_preparation(pipeline, job, rq_layout.intermediate_key(worker, job.origin))


def set_processing_procline(worker: BaseWorker, job: Job) -> None:
    """The one thing rq's `prepare_job_execution` does that is not a Redis write."""
    worker.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")  # type: ignore[no-untyped-call]  # rq: untyped


class ShortcutBookkeeping(Bookkeeping):
    """The base of the round-trip strategies: the dequeue in one script (`OneTripDequeue`), and
    rq's `prepare_job_execution` writes sent with the job's start when rq's `perform_job` runs it."""

    def __init__(self, worker: BaseWorker) -> None:
        super().__init__(worker)
        self.dequeuing = OneTripDequeue(worker)

    def bootstrap(self) -> None:
        # Before any horse is forked: each would otherwise resolve the client info for its connection.
        share_driver_info(self.worker.connection)

    def teardown(self) -> None:
        self.dequeuing.forget_suspension_check()

    def check_for_suspension(self, burst: bool, rq: Callable[[bool], None]) -> None:
        self.dequeuing.check_for_suspension(burst, rq)

    def dequeue(
        self,
        timeout: int | None,
        max_idle_time: int | None,
        rq: Callable[[int | None, int | None], Dequeued],
        rq_check_for_suspension: Callable[[bool], None],
    ) -> Dequeued:
        return self.dequeuing.dequeue(timeout, max_idle_time, rq, rq_check_for_suspension)

    def joins_start(self, run: Run) -> bool:
        return run.executing and runs_rq_perform_job(self.worker)

    def queue_preparation(self, job: Job, pipeline: Pipeline[Any]) -> None:
        queue_job_preparation(self.worker, job, pipeline)
