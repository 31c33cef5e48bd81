"""Fewer Redis round trips per job: rq's bookkeeping, the same writes, sent together.

rq's worker makes 20 round trips for a no-op job (`SimpleWorker`; 24 with a forked horse): its
state, heartbeat (three commands, three round trips), pop and job fetch each go on their own.
`LeanRoundTripsMixin` sends the same writes in fewer round trips:

- dequeue: when a job is waiting, rq's idle state, heartbeat, suspension check, pop and job fetch
  are one script (`worker.dequeue`);
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
from typing import TYPE_CHECKING, Any

from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now, utcformat
from rq.worker import BaseWorker, WorkerStatus

from worker.dequeue import OneTripDequeueMixin, class_attr

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

_RQ_PERFORM_JOB = BaseWorker.__dict__["perform_job"]


def _driver_info_resolver() -> Any:
    """redis-py's `resolve_driver_info(driver_info=, lib_name=, lib_version=)`, all keywords optional,
    or None where this redis-py has no such function: before 7.2 there is no `redis.driver_info`,
    and in 7.2.0 and 7.3.0 its three arguments are required (so: its signature, not a version number)."""
    try:
        from redis.driver_info import resolve_driver_info
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
    pipeline.persist(job.key)
    # rq removes it from there only for a worker of one queue; our dequeue script moves every job
    # through it (and a job rq popped outright is not there: LREM removes nothing).
    pipeline.lrem(Queue(job.origin, connection=worker.connection).intermediate_queue_key, 1, job.id)


class ExecutionStartMixin(BaseWorker):
    """rq's `prepare_execution` split in two, so that mixins can add to its transaction."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        # Before any horse is forked: each would otherwise resolve the client info for its connection.
        share_driver_info(self.connection)
        super().bootstrap(*args, **kwargs)

    def prepare_execution(self, job: Job) -> Execution:
        with self.connection.pipeline() as pipeline:
            execution = self.queue_execution_start(job, pipeline)
            pipeline.execute()
        return execution

    def start_with_preparation(self, job: Job) -> Execution:
        """Start `job` in one transaction that also carries what `prepare_job_execution` would send
        next (`queue_job_preparation`); the caller makes sure that it then sends nothing more."""
        with self.connection.pipeline() as pipeline:
            execution = self.queue_execution_start(job, pipeline)
            queue_job_preparation(self, job, pipeline)
            pipeline.execute()
        return execution

    def queue_execution_start(self, job: Job, pipeline: Pipeline[Any]) -> Execution:
        """rq's `prepare_execution`, its commands queued on `pipeline`; mixins add theirs after super()."""
        execution = Execution.create(
            job, self.get_heartbeat_ttl(job), pipeline=pipeline, worker_name=self.name
        )
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        return execution


class LeanRoundTripsMixin(OneTripDequeueMixin, ExecutionStartMixin):
    """rq's per-job bookkeeping in fewer round trips; see the module docstring."""

    #: Set while `execute_job` runs (inherited by a forked horse).
    _lean_in_job: bool = False
    #: The state rq set at the end of a job, written with the next heartbeat rather than alone.
    _lean_owed_state: str | None = None
    #: Set when `execute_job` returns; the heartbeat rq's loop sends next is skipped.
    _lean_job_just_ran: bool = False
    #: The job whose `prepare_job_execution` writes went with `prepare_execution`'s.
    _lean_prepared_job_id: str | None = None
    #: The job whose ending heartbeat rides in its outcome pipeline.
    _lean_ended_job_id: str | None = None

    # -- state and heartbeat ------------------------------------------------------------------------

    def set_state(self, state: str, pipeline: Pipeline[Any] | None = None) -> None:
        if pipeline is None and self._lean_in_job and state == WorkerStatus.IDLE:
            # rq's last word on a job; the heartbeat that follows it in rq's loop carries it.
            self._state, self._lean_owed_state = state, state
            return
        self._lean_owed_state = None
        super().set_state(state, pipeline=pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline[Any] | None = None) -> None:
        just_ran_job, self._lean_job_just_ran = self._lean_job_just_ran, False
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            self._pay_owed_state(pipeline)
            return
        if just_ran_job and timeout is None:
            # rq's loop heartbeats after each job, then at once again with its suspension check
            # (`rq.suspension.is_suspended`, or the dequeue script), which writes the idle state too.
            self.last_heartbeat = now()
            return
        with self.connection.pipeline(transaction=False) as own:
            super().heartbeat(timeout, pipeline=own)
            self._pay_owed_state(own)
            own.execute()

    def register_death(self) -> None:
        if self._lean_owed_state is not None:
            # The loop stopped right after a job (max_jobs, a warm shutdown) before the suspension
            # check that would have carried rq's idle state and heartbeat: send them now.
            self._lean_job_just_ran = False
            self.heartbeat()
        super().register_death()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def _pay_owed_state(self, pipeline: Pipeline[Any]) -> None:
        owed, self._lean_owed_state = self._lean_owed_state, None
        if owed is not None:
            super().set_state(owed, pipeline=pipeline)

    # -- one job ------------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._lean_in_job = True
        try:
            super().execute_job(job, queue)
        finally:
            self._lean_in_job = False
            self._lean_prepared_job_id = None
        self._lean_job_just_ran = True

    def prepare_execution(self, job: Job) -> Execution:
        if not self._lean_in_job or not runs_rq_perform_job(self):
            return super().prepare_execution(job)
        execution = self.start_with_preparation(job)
        self._lean_prepared_job_id = job.id
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if self._lean_prepared_job_id != job.id:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        self._lean_prepared_job_id = None  # sent with prepare_execution; only the procline is left
        self.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")  # type: ignore[no-untyped-call]  # rq: untyped

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        if job._success_callback_name is not None or job._failure_callback_name is not None:
            super().handle_execution_ended(job, queue, heartbeat_ttl)  # the job must look alive meanwhile
            return
        job.ended_at = now()
        job.last_heartbeat = now()
        self._lean_ended_job_id = job.id

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        super().cleanup_execution(job, pipeline, execution)
        if self._lean_ended_job_id != job.id:
            return
        self._lean_ended_job_id = None
        # A finished job's hash is saved whole (last_heartbeat included) or deleted (result_ttl=0)
        # in this very pipeline; any other outcome keeps rq's separate write, here.
        if job.get_status(refresh=False) != JobStatus.FINISHED and job.last_heartbeat is not None:
            pipeline.hset(job.key, "last_heartbeat", utcformat(job.last_heartbeat))
