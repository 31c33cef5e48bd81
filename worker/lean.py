"""Fewer Redis round trips per job: rq's bookkeeping, the same writes, sent together.

rq's worker makes 20 round trips for a no-op job (`SimpleWorker`; 24 with a forked horse): its
state, heartbeat (three commands, three round trips), pop and job fetch each go on their own.
`LeanRoundTripsMixin` sends the same writes in fewer round trips:

- dequeue: when a job is waiting, rq's idle state, heartbeat, suspension check (rq's loop makes it
  just before), pop and job fetch are one script (`scripts/dequeue_job.lua`); with every queue
  empty, or workers suspended, rq's own check and blocking dequeue run as before;
- a heartbeat outside a pipeline is one pipeline (rq sends its three commands one by one), and
  carries the idle state rq writes at the end of each job;
- the job's own heartbeat when it ends (rq's `handle_execution_ended`) rides in the pipeline that
  saves its outcome, when no success or failure callback runs in between;
- the start of a job (rq's `prepare_execution`, then `prepare_job_execution`, in the horse for the
  forking worker) is one transaction, sent by the worker before the job runs or forks.

What Redis holds afterwards is what rq writes; only the grouping of writes changes. Each shortcut
stands aside when it cannot tell that rq would do the same (a custom queue or job class that
overrides the dequeue or fetch, registry maintenance due before the pop, callbacks, Redis errors).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ConnectionError, TimeoutError
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus, parse_job_id
from rq.logutils import blue, green
from rq.queue import Queue
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import as_text, get_version, now, utcformat
from rq.worker import BaseWorker, WorkerStatus

if TYPE_CHECKING:
    from redis.client import Pipeline
    from redis.commands.core import Script

SCRIPTS_DIR = Path(__file__).with_name("scripts")

# rq's own dequeue and fetch: the script does what they do, and only that, so it stands aside
# for a queue or job class that overrides them (or a test that patches them).
_RQ_DEQUEUE = (Queue.__dict__["dequeue_any"], Queue.__dict__["lmove"], Queue.__dict__["lpop"])
_RQ_FETCH = (Job.__dict__["fetch"], Job.__dict__["refresh"], Job.__dict__["restore"])
_RQ_PERFORM_JOB = BaseWorker.__dict__["perform_job"]


@functools.cache
def _script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def _uses_rq_dequeue(queue_class: type[Queue], job_class: type[Job]) -> bool:
    dequeue = tuple(_class_attr(queue_class, name) for name in ("dequeue_any", "lmove", "lpop"))
    fetch = tuple(_class_attr(job_class, name) for name in ("fetch", "refresh", "restore"))
    return dequeue == _RQ_DEQUEUE and fetch == _RQ_FETCH


def _class_attr(cls: type, name: str) -> object:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


class ExecutionStartMixin(BaseWorker):
    """rq's `prepare_execution` split in two, so that mixins can add to its transaction."""

    def prepare_execution(self, job: Job) -> Execution:
        with self.connection.pipeline() as pipeline:
            execution = self.queue_execution_start(job, pipeline)
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


class LeanRoundTripsMixin(ExecutionStartMixin):
    """rq's per-job bookkeeping in fewer round trips; see the module docstring."""

    _lean_dequeue_script: Script | None = None
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
    #: `burst` of the suspension check rq's loop made just before dequeueing, left to the dequeue.
    _lean_suspension_burst: bool | None = None

    # -- dequeue ------------------------------------------------------------------------------------

    def check_for_suspension(self, burst: bool) -> None:
        if self._can_pop_in_one_trip():
            # rq's loop dequeues right after this check: the dequeue script makes it, same round trip.
            self._lean_suspension_burst = burst
            return
        super().check_for_suspension(burst)

    def _can_pop_in_one_trip(self) -> bool:
        return not self.should_run_maintenance_tasks and _uses_rq_dequeue(self.queue_class, self.job_class)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        burst, self._lean_suspension_burst = self._lean_suspension_burst, None
        found: tuple[Job, Queue] | Literal["suspended"] | None = None
        if self._can_pop_in_one_trip():
            try:
                found = self._pop_waiting_job(check_suspension=burst is not None)
            except (ConnectionError, TimeoutError):
                found = None  # rq's check and loop below wait for Redis, as they would have
            else:
                burst = burst if found == "suspended" else None
        if burst is not None:  # suspended, or not known: rq's own check, then what its loop does next
            super().check_for_suspension(burst)
            if self._stop_requested:
                self.log.info("Worker %s: stopping on request", self.name)
                raise StopRequested()
        if found is None or found == "suspended":
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        job, queue = found
        qnames = ",".join(self.queue_names())
        self.procline("Listening on " + qnames)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        self.reorder_queues(reference_queue=queue)
        self.log.debug("Worker %s: dequeued job %s from %s", self.name, blue(job.id), green(queue.name))
        job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]  # rq: untyped
        if self.log_job_description:
            self.log.info(
                "Worker %s: %s: %s (%s)", self.name, green(queue.name), blue(job.description), job.id
            )
        else:
            self.log.info("Worker %s: %s: %s", self.name, green(queue.name), job.id)
        return job, queue

    def _pop_waiting_job(self, *, check_suspension: bool) -> tuple[Job, Queue] | Literal["suspended"] | None:
        """rq's idle state, heartbeat, suspension check (if asked), non-blocking pop and job fetch, in
        one script; None if no job waits."""
        queues = self._ordered_queues
        if len(queues) == 1 and get_version(self.connection) >= (6, 2, 0):
            mode, queue_keys = "lmove", [queues[0].key, queues[0].intermediate_queue_key]
        else:
            mode, queue_keys = "lpop", [queue.key for queue in queues]
        if self._lean_dequeue_script is None:
            self._lean_dequeue_script = self.connection.register_script(_script_text("dequeue_job.lua"))
        beat_at = now()
        ttl = self.worker_ttl + 60
        reply = self._lean_dequeue_script(
            keys=[self.key, self.executions_key, WORKERS_SUSPENDED, *queue_keys],
            args=[
                mode,
                utcformat(beat_at),
                ttl,
                self.job_class.redis_job_namespace_prefix,
                "check" if check_suspension else "",
            ],
        )
        self._state, self._lean_owed_state, self.last_heartbeat = WorkerStatus.IDLE, None, beat_at
        if reply == -1:
            return "suspended"
        if not reply:
            return None
        queue_key, job_id, *flat = reply
        queue = self.queue_class.from_queue_key(
            as_text(queue_key),
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        job_id = as_text(job_id)
        try:
            job = self.job_class(parse_job_id(job_id), connection=self.connection, serializer=self.serializer)
            job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
        except Exception as exc:
            # As rq's `Queue._fetch_dequeued_job`: say which job and queue (worker.loading reads them).
            exc.job_id = job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue

    def teardown(self) -> None:
        self._lean_suspension_burst = None  # a check left by a loop that stopped before dequeueing
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

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
            # (`rq.suspension.is_suspended`, or the dequeue script), which writes the owed idle state.
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
        if not self._lean_in_job or _class_attr(type(self), "perform_job") is not _RQ_PERFORM_JOB:
            # Only rq's perform_job is known to call prepare_job_execution first thing.
            return super().prepare_execution(job)
        with self.connection.pipeline() as pipeline:
            execution = self.queue_execution_start(job, pipeline)
            # What the horse's (or SimpleWorker's) prepare_job_execution would send next.
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            BaseWorker.heartbeat(self, heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if len(self.queues) == 1:  # as rq's perform_job decides
                pipeline.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipeline.execute()
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
