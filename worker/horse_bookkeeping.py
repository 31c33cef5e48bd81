"""Fewer Redis round trips per job for the prefork worker and its horse: 5 where rq's make 20 to 24.

Between two jobs rq's worker writes its state and heartbeat several times over, each heartbeat
three commands, and checks for suspension; it pops the job and fetches it in two more round trips;
it starts the job in one transaction and its horse prepares it in another; the horse heartbeats the
job once more just before saving the outcome. Here:

- when a job is waiting, the idle state, heartbeat, suspension check, pop and job fetch are one
  script (`worker.dequeue`), which moves the job into its queue's intermediate list even for a
  worker of several queues (rq pops those outright), so a worker killed before starting it leaves
  it to be put back (`worker.intermediate`);
- the worker's start transaction also carries what the horse's `prepare_job_execution` would send
  (`worker.lean.queue_job_preparation`, which takes the job off its intermediate list), and the
  order to the horse says so: the horse only sets its procline;
- the pipeline in which the horse saves a job's outcome also marks the worker idle and alive
  (`cleanup_execution`, which rq calls inside that pipeline); the worker only notes it
  (`note_horse_saved_idle`);
- the worker's own heartbeat is one pipeline, and a heartbeat, state write or suspension check
  repeating one sent within `bookkeeping_coalesce_seconds` is skipped;
- the horse skips rq's job heartbeat before saving the outcome when no callback runs in between.

What Redis shows is unchanged but for timing: the worker's `last_heartbeat` and a `rq suspend`
may be seen up to `bookkeeping_coalesce_seconds` later than rq would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rq.utils import now
from rq.worker import WorkerStatus

from worker.dequeue import OneTripDequeueMixin
from worker.lean import ExecutionStartMixin, runs_rq_perform_job

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import Worker as _WorkerBase
else:
    _WorkerBase = object


class LeanBookkeepingMixin(OneTripDequeueMixin, ExecutionStartMixin, _WorkerBase):
    """rq's bookkeeping, minus the repeats; see the module docstring. Goes on rq's `Worker`."""

    #: Seconds within which a repeated heartbeat, state write or suspension check is skipped.
    bookkeeping_coalesce_seconds: float = 0.25
    #: Set while the worker starts a job for its horse (`start_for_horse`).
    _starting_for_horse: bool = False
    #: The job whose `prepare_job_execution` writes went with its start transaction: in the worker,
    #: until its order is sent; in the horse, until rq's `perform_job` calls `prepare_job_execution`.
    _prepared_job_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_sent: dict[str, tuple[float, object]] = {}

    def note_horse_saved_idle(self) -> None:
        """The horse's outcome pipeline said "idle" and heartbeat for us (see `cleanup_execution`)."""
        self._state = WorkerStatus.IDLE
        self.last_heartbeat = now()
        moment = time.monotonic()
        self._last_sent["state"] = (moment, WorkerStatus.IDLE)
        self._last_sent["heartbeat"] = (moment, None)

    # -- the start of a job ----------------------------------------------------------------------

    def start_for_horse(self, job: Job) -> tuple[Execution, bool]:
        """Start `job` (rq's `prepare_execution`, our lease) for the horse to run; the execution, and
        whether the start also sent what the horse's `prepare_job_execution` would (`job` then holds
        it too, for the order)."""
        self._starting_for_horse, self._prepared_job_id = True, None
        try:
            execution = self.prepare_execution(job)
        finally:
            self._starting_for_horse = False
        prepared, self._prepared_job_id = self._prepared_job_id == job.id, None
        return execution, prepared

    def prepare_execution(self, job: Job) -> Execution:
        if not self._starting_for_horse or not runs_rq_perform_job(self):
            return super().prepare_execution(job)
        execution = self.start_with_preparation(job)
        self._prepared_job_id = job.id
        return execution

    def expect_prepared(self, job_id: str | None) -> None:
        """In the horse: the next job's preparation was sent with its start (`job_id`), or not (None)."""
        self._prepared_job_id = job_id

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if self._prepared_job_id == job.id:
            self._prepared_job_id = None  # sent with the start transaction; only the procline is left
            self.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")  # type: ignore[no-untyped-call]  # rq: untyped
            return
        # rq takes the job off the intermediate list only for a worker of one queue; our dequeue
        # moves every job through it (LREM removes nothing when the job is not there).
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    # -- the end of a job -----------------------------------------------------------------------

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        super().cleanup_execution(job, pipeline, execution)
        if self.is_horse:
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline[Any] | None = None) -> None:
        if self.is_horse:
            super().heartbeat(timeout, pipeline=pipeline)
        elif pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            self._last_sent["heartbeat"] = (time.monotonic(), timeout)
        elif not self._repeats("heartbeat", timeout):
            with self.connection.pipeline(transaction=False) as own:
                super().heartbeat(timeout, pipeline=own)
                own.execute()

    def set_state(self, state: str, pipeline: Pipeline[Any] | None = None) -> None:
        if pipeline is None and state == self._state and self._repeats("state", state):
            return
        super().set_state(state, pipeline=pipeline)
        self._last_sent["state"] = (time.monotonic(), state)

    def check_for_suspension(self, burst: bool) -> None:
        if not self._repeats("suspension", burst):
            super().check_for_suspension(burst)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        try:
            no_callbacks = job.success_callback is None and job.failure_callback is None
        except Exception:  # an unimportable callback: rq's own path reports it
            no_callbacks = False
        if no_callbacks:
            # rq heartbeats the job so that it looks alive while its callbacks run; with none, the
            # outcome's own pipeline follows at once.
            job.ended_at = job.last_heartbeat = now()
            return
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def _repeats(self, what: str, value: object) -> bool:
        """Whether `what` was sent with this `value` within the coalescing window; records it if not."""
        moment = time.monotonic()
        last = self._last_sent.get(what)
        if last is not None and last[1] == value and moment - last[0] < self.bookkeeping_coalesce_seconds:
            return True
        self._last_sent[what] = (moment, value)
        return False
