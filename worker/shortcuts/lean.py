"""Fewer Redis round trips per job: rq's bookkeeping, the same writes, sent together.

rq's worker makes 20 round trips for a no-op job (`SimpleWorker`; 24 with a forked horse): its
state, heartbeat (three commands, three round trips), pop and job fetch each go on their own.
`LeanRoundTripsMixin` sends the same writes in fewer round trips:

- dequeue: when a job is waiting, rq's idle state, heartbeat, suspension check, pop and job fetch
  are one script (`worker.shortcuts.dequeue`);
- a heartbeat outside a pipeline is one pipeline (rq sends its three commands one by one), and
  carries the idle state rq writes at the end of each job;
- the job's own heartbeat when it ends (rq's `handle_execution_ended`) rides in the pipeline that
  saves its outcome, when no success or failure callback runs in between;
- the start of a job (rq's `prepare_execution`, then `prepare_job_execution`, in the horse for the
  forking worker) is one transaction, sent by the worker before the job runs or forks.

A forked horse's Redis connection, new with every horse, is made without redis-py reading its own
version from the installed package's metadata again (~3 ms of each `RetryWorker` job, before its
first command): the worker resolves the client info it sends (`CLIENT SETINFO`) once, for its pool
(`share_driver_info`, where the installed redis-py allows it; elsewhere each connection resolves it).

What Redis holds afterwards is what rq writes; only the grouping of writes changes. Each shortcut
stands aside when it cannot tell that rq would do the same (a custom queue or job class that
overrides the dequeue or fetch, registry maintenance due before the pop, callbacks, Redis errors).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from worker.bookkeeping import Bookkeeping, Dequeued
from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private
from worker.run import Run
from worker.shortcuts.dequeue import OneTripDequeue, class_attr

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

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


class LeanBookkeeping(Bookkeeping):
    """rq's per-job bookkeeping in fewer round trips, for `RetryWorker` and `SimpleRetryWorker`;
    see the module docstring."""

    def __init__(self, worker: BaseWorker) -> None:
        super().__init__(worker)
        self.dequeuing = OneTripDequeue(worker)
        #: The state rq set at the end of a job, written with the next heartbeat rather than alone.
        self._owed_state: str | None = None
        #: `execute_job` has just returned: the heartbeat rq's loop sends next is skipped.
        self._job_just_ran = False

    def bootstrap(self) -> None:
        # Before any horse is forked: each would otherwise resolve the client info for its connection.
        share_driver_info(self.worker.connection)

    def teardown(self) -> None:
        self.dequeuing.forget_suspension_check()

    # -- between jobs ------------------------------------------------------------------------------

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

    def set_state(self, state: str, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        run = running(self.worker)
        if pipeline is None and run is not None and run.executing and state == WorkerStatus.IDLE:
            # rq's last word on a job; the heartbeat that follows it in rq's loop carries it.
            rq_private.note_state(self.worker, state)
            self._owed_state = state
            return
        self._owed_state = None
        rq(state, pipeline=pipeline)

    def heartbeat(self, timeout: int | None, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        just_ran_job, self._job_just_ran = self._job_just_ran, False
        if pipeline is not None:
            rq(timeout, pipeline=pipeline)
            self._pay_owed_state(pipeline)
            return
        if just_ran_job and timeout is None:
            # rq's loop heartbeats after each job, then at once again with its suspension check
            # (`rq.suspension.is_suspended`, or the dequeue script), which writes the idle state too.
            self.worker.last_heartbeat = now()
            return
        with self.worker.connection.pipeline(transaction=False) as own:
            rq(timeout, pipeline=own)
            self._pay_owed_state(own)
            own.execute()

    def register_death(self, rq: Callable[[], None]) -> None:
        if self._owed_state is not None:
            # The loop stopped right after a job (max_jobs, a warm shutdown) before the suspension
            # check that would have carried rq's idle state and heartbeat: send them now.
            self._job_just_ran = False
            self.worker.heartbeat()
        rq()

    def _pay_owed_state(self, pipeline: Pipeline[Any]) -> None:
        owed, self._owed_state = self._owed_state, None
        if owed is not None:
            BaseWorker.set_state(self.worker, owed, pipeline=pipeline)

    def job_ran(self) -> None:
        self._job_just_ran = True

    # -- one job ------------------------------------------------------------------------------------

    def joins_start(self, run: Run) -> bool:
        return run.executing and runs_rq_perform_job(self.worker)

    def queue_preparation(self, job: Job, pipeline: Pipeline[Any]) -> None:
        queue_job_preparation(self.worker, job, pipeline)

    def prepare_job_execution(
        self, job: Job, run: Run | None, remove_from_intermediate_queue: bool, rq: Callable[..., None]
    ) -> None:
        if run is None or not run.prepared:
            rq(job, remove_from_intermediate_queue)
            return
        run.prepared = False  # sent with the start transaction; only the procline is left
        set_processing_procline(self.worker, job)

    def execution_ended(
        self, job: Job, queue: Queue, heartbeat_ttl: int, run: Run | None, rq: Callable[..., None]
    ) -> None:
        if run is None or rq_private.has_callbacks(job):
            rq(job, queue, heartbeat_ttl)  # the job must look alive while its callbacks run
            return
        job.ended_at = now()
        job.last_heartbeat = now()
        run.ending_heartbeat_owed = True

    def add_to_outcome(self, job: Job, pipeline: Pipeline[Any], run: Run | None) -> None:
        if run is None or not run.ending_heartbeat_owed:
            return
        run.ending_heartbeat_owed = False
        # A finished job's hash is saved whole (last_heartbeat included) or deleted (result_ttl=0)
        # in this very pipeline; any other outcome keeps rq's separate write, here.
        if job.get_status(refresh=False) != JobStatus.FINISHED:
            rq_layout.queue_last_heartbeat(pipeline, job)


def running(worker: BaseWorker) -> Run | None:
    """The work loop's current run of `worker`, if a job is running."""
    run: Run | None = getattr(worker, "run", None)
    return run


def set_processing_procline(worker: BaseWorker, job: Job) -> None:
    """The one thing rq's `prepare_job_execution` does that is not a Redis write."""
    worker.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")  # type: ignore[no-untyped-call]  # rq: untyped
