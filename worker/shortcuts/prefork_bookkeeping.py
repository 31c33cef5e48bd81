"""Fewer Redis round trips per job for the prefork worker and its horse: 5 where rq's make 20 to 24.

Between two jobs rq's worker writes its state and heartbeat several times over, each heartbeat
three commands, and checks for suspension; it pops the job and fetches it in two more round trips;
it starts the job in one transaction and its horse prepares it in another; the horse heartbeats the
job once more just before saving the outcome. Here:

- when a job is waiting, the idle state, heartbeat, suspension check, pop and job fetch are one
  script (`worker.shortcuts.dequeue`), which moves the job into its queue's intermediate list even for a
  worker of several queues (rq pops those outright), so a worker killed before starting it leaves
  it to be put back (`worker.safety.intermediate`);
- the worker's start transaction also carries what the horse's `prepare_job_execution` would send
  (`worker.shortcuts.common.queue_job_preparation`, which takes the job off its intermediate list), and the
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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from worker.rq_compat import private as rq_private
from worker.shortcuts.common import ShortcutBookkeeping, set_processing_procline

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue

    from worker.run import Run


class PreforkBookkeeping(ShortcutBookkeeping):
    """rq's bookkeeping, minus the repeats, for `PreforkRetryWorker` and its horse; see the module
    docstring. Reads the worker's `bookkeeping_coalesce_seconds`."""

    def __init__(self, worker: BaseWorker) -> None:
        super().__init__(worker)
        self._last_sent: dict[str, tuple[float, object]] = {}

    def note_horse_saved_idle(self) -> None:
        """The horse's outcome pipeline said "idle" and heartbeat for us (see `add_to_outcome`)."""
        rq_private.note_state(self.worker, WorkerStatus.IDLE)
        self.worker.last_heartbeat = now()
        moment = time.monotonic()
        self._last_sent["state"] = (moment, WorkerStatus.IDLE)
        self._last_sent["heartbeat"] = (moment, None)

    # -- between jobs ------------------------------------------------------------------------------

    def check_for_suspension(self, burst: bool, rq: Callable[[bool], None]) -> None:
        if not self._repeats("suspension", burst):
            super().check_for_suspension(burst, rq)

    def heartbeat(self, timeout: int | None, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        if self.worker.is_horse:
            rq(timeout, pipeline=pipeline)
        elif pipeline is not None:
            rq(timeout, pipeline=pipeline)
            self._last_sent["heartbeat"] = (time.monotonic(), timeout)
        elif not self._repeats("heartbeat", timeout):
            with self.worker.connection.pipeline(transaction=False) as own:
                rq(timeout, pipeline=own)
                own.execute()

    def set_state(self, state: str, pipeline: Pipeline[Any] | None, rq: Callable[..., None]) -> None:
        if (
            pipeline is None
            and state == rq_private.cached_state(self.worker)
            and self._repeats("state", state)
        ):
            return
        rq(state, pipeline=pipeline)
        self._last_sent["state"] = (time.monotonic(), state)

    def _repeats(self, what: str, value: object) -> bool:
        """Whether `what` was sent with this `value` within the coalescing window; records it if not."""
        moment = time.monotonic()
        last = self._last_sent.get(what)
        window = self.worker.bookkeeping_coalesce_seconds  # type: ignore[attr-defined]  # PreforkRetryWorker's
        if last is not None and last[1] == value and moment - last[0] < window:
            return True
        self._last_sent[what] = (moment, value)
        return False

    # -- one job -----------------------------------------------------------------------------------

    def prepare_job_execution(
        self, job: Job, run: Run | None, remove_from_intermediate_queue: bool, rq: Callable[..., None]
    ) -> None:
        if run is not None and run.prepared:
            run.prepared = False  # sent with the start transaction; only the procline is left
            set_processing_procline(self.worker, job)
            return
        # rq takes the job off the intermediate list only for a worker of one queue; our dequeue
        # moves every job through it (LREM removes nothing when the job is not there).
        rq(job, True)

    def execution_ended(
        self, job: Job, queue: Queue, heartbeat_ttl: int, run: Run | None, rq: Callable[..., None]
    ) -> None:
        try:
            no_callbacks = job.success_callback is None and job.failure_callback is None
        except Exception:  # an unimportable callback: rq's own path reports it
            no_callbacks = False
        if no_callbacks:
            # rq heartbeats the job so that it looks alive while its callbacks run; with none, the
            # outcome's own pipeline follows at once.
            job.ended_at = job.last_heartbeat = now()
            return
        rq(job, queue, heartbeat_ttl)

    def add_to_outcome(self, job: Job, pipeline: Pipeline[Any], run: Run | None) -> None:
        if self.worker.is_horse:
            self.worker.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.worker.heartbeat(pipeline=pipeline)
