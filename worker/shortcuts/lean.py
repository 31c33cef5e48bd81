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
(`common.share_driver_info`, where the installed redis-py allows it; elsewhere each connection
resolves it).

What Redis holds afterwards is what rq writes; only the grouping of writes changes. Each shortcut
stands aside when it cannot tell that rq would do the same (a custom queue or job class that
overrides the dequeue or fetch, registry maintenance due before the pop, callbacks, Redis errors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private
from worker.run import Run
from worker.shortcuts.common import ShortcutBookkeeping, set_processing_procline

if TYPE_CHECKING:
    from redis.client import Pipeline


class LeanBookkeeping(ShortcutBookkeeping):
    """rq's per-job bookkeeping in fewer round trips, for `RetryWorker` and `SimpleRetryWorker`;
    see the module docstring."""

    def __init__(self, worker: BaseWorker) -> None:
        super().__init__(worker)
        #: The state rq set at the end of a job, written with the next heartbeat rather than alone.
        self._owed_state: str | None = None
        #: `execute_job` has just returned: the heartbeat rq's loop sends next is skipped.
        self._job_just_ran = False

    # -- between jobs ------------------------------------------------------------------------------

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
