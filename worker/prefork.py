"""A crash-isolated worker without a fork per job: one long-lived work horse runs job after job.

rq's `Worker` forks a horse for every job (a fork and a fresh Redis connection, ~13 ms); its
`SimpleWorker` runs jobs in the worker itself, so a job that segfaults or calls `os._exit` takes
the worker down. `PreforkMixin` forks a horse once (`worker.horse`) and hands it job after job
over a socket pair; the worker keeps rq's bookkeeping (dequeue, executions, heartbeats, timeouts,
stop-job and shutdown commands) exactly where rq's forking worker has it, so our other mixins see
the same hooks called in the same process. When the horse dies mid-job (segfault, `os._exit`,
SIGKILL, the OOM killer, or killed by us after its job's timeout plus `horse_kill_grace_seconds`),
that job alone fails through rq's crash path (`handle_work_horse_killed`, `handle_job_failure`,
so its retry policy applies) and the next job runs in a fresh horse. A horse is also replaced after
`max_jobs_per_horse` jobs, or after a job that leaves it above `max_horse_rss_mb` of resident
memory, which bounds leaks and state left behind by jobs: unlike a fork per job, jobs run by one
horse share its module state, as they would under `SimpleWorker`.

Round trips: 5 per job where rq's workers make 20 to 24, the job travelling to the horse in its
order (no refetch) and the rest in `worker.horse_bookkeeping`, whose dequeue moves every job, from
one queue or several, through its queue's intermediate list (`worker.intermediate`).
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any

from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import Worker, WorkerStatus
from rq.worker.base import SHUTDOWN_SIGNAL

from worker.hooks import MaintenanceMixin
from worker.horse import ExitStatus, Horse, Order, Report
from worker.horse_bookkeeping import LeanBookkeepingMixin
from worker.intermediate import IntermediateCleanupMixin
from worker.recovery import RecoveryMixin
from worker.retry import RetryMixin
from worker.shutdown import ShutdownMixin

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.queue import Queue

    _WorkerBase = Worker
else:
    _WorkerBase = object

#: Statuses of a job whose horse died before saving its outcome: the crash is its outcome.
_UNSETTLED = (JobStatus.QUEUED, JobStatus.STARTED)


class PreforkMixin(LeanBookkeepingMixin):
    """Runs jobs in a long-lived forked horse; see the module docstring. Goes on rq's `Worker`."""

    #: Jobs one horse runs before it is replaced by a fresh one.
    max_jobs_per_horse: int = 500
    #: Resident memory, in MB, above which a horse is replaced after its job; None: no limit.
    max_horse_rss_mb: float | None = 1024.0
    #: Seconds past a job's timeout before the worker kills a horse that rq's death penalty did not stop.
    horse_kill_grace_seconds: float = 60.0

    def __init__(
        self,
        *args: Any,
        max_jobs_per_horse: int | None = None,
        max_horse_rss_mb: float | None = None,
        horse_kill_grace_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if max_jobs_per_horse is not None:
            self.max_jobs_per_horse = max_jobs_per_horse
        if max_horse_rss_mb is not None:
            self.max_horse_rss_mb = max_horse_rss_mb
        if horse_kill_grace_seconds is not None:
            self.horse_kill_grace_seconds = horse_kill_grace_seconds
        _check(
            self.max_jobs_per_horse >= 1, "max_jobs_per_horse", self.max_jobs_per_horse, "a whole number >= 1"
        )
        _check(
            self.max_horse_rss_mb is None or self.max_horse_rss_mb > 0,
            "max_horse_rss_mb",
            self.max_horse_rss_mb,
            "a number of MB > 0, or None (class attribute) for no limit",
        )
        _check(
            self.horse_kill_grace_seconds >= 0,
            "horse_kill_grace_seconds",
            self.horse_kill_grace_seconds,
            ">= 0",
        )
        self._horse: Horse | None = None

    # -- the horse's life ---------------------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        self._spawn_spare()  # ready before the first job; it connects to Redis while we dequeue

    def teardown(self) -> None:
        if self._horse is not None and not self.is_horse:
            self._retire_horse(self._horse)
        super().teardown()

    def _spawn_horse(self) -> Horse:
        self._horse = Horse.spawn(self)
        self.log.debug("Worker %s: forked work horse %d", self.name, self._horse.pid)
        return self._horse

    def _spawn_spare(self) -> None:
        """Fork the next horse now, between jobs, unless stopping; if forking fails, the next job retries."""
        if self._stop_requested:
            return
        try:
            self._spawn_horse()
        except OSError as exc:
            self.log.error(
                "Worker %s: cannot fork a work horse (%s); trying again for the next job", self.name, exc
            )

    def _ready_horse(self) -> Horse:
        horse = self._horse
        if horse is None or not horse.alive():
            if horse is not None:
                self.log.warning("Worker %s: idle work horse %d died; forking another", self.name, horse.pid)
            horse = self._spawn_horse()
        return horse

    def _retire_horse(self, horse: Horse) -> None:
        self._horse = None
        if not horse.retire():
            self.log.warning(
                "Worker %s: work horse %d did not exit when retired; killed it", self.name, horse.pid
            )

    def _after_report(self, horse: Horse, report: Report) -> None:
        horse.jobs_done += 1
        rss_mb = report.rss_bytes / (1024 * 1024)
        if horse.jobs_done >= self.max_jobs_per_horse:
            why = f"ran {horse.jobs_done} jobs"
        elif self.max_horse_rss_mb is not None and rss_mb > self.max_horse_rss_mb:
            why = f"uses {rss_mb:.0f} MB, over {self.max_horse_rss_mb:g} MB"
        else:
            return
        self.log.info("Worker %s: replacing work horse %d, which %s", self.name, horse.pid, why)
        self._retire_horse(horse)
        self._spawn_spare()

    # -- one job --------------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        horse = self._ready_horse()
        execution, prepared = self.start_for_horse(job)
        order = Order(
            job.id,
            queue.name,
            execution.id,
            execution.created_at.timestamp(),
            _job_hash(self, job),
            prepared=prepared,
        )
        if not horse.send(order):  # it died since we looked: the job has not started, give it another
            horse = self._ready_horse()
            horse.send(order)  # if this one is dead already, `_watch` sees it and the job fails
        job.started_at = now()
        self._horse_pid = horse.pid  # rq's kill_horse, stop-job and cold shutdown act on it
        try:
            report = self._watch(horse, job, order)
        finally:
            self._horse_pid = 0
            self.executions.pop(execution.id, None)
        if report is not None:
            self._after_report(horse, report)
            self.note_horse_saved_idle()
            return
        self._handle_dead_horse(horse, job, queue, execution)
        with self.connection.pipeline() as pipeline:
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)
            pipeline.execute()

    def _watch(self, horse: Horse, job: Job, order: Order) -> Report | None:
        """Wait for the horse's report, heartbeating; None if it died or was killed."""
        timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
        kill_at = None if timeout == -1 else time.monotonic() + timeout + self.horse_kill_grace_seconds
        while True:
            wait = float(self.job_monitoring_interval)
            if kill_at is not None:
                wait = max(0.0, min(wait, kill_at - time.monotonic()))
            try:
                report = horse.wait_report(wait)
            except EOFError:
                return None
            if report is not None and report.job_id != job.id:
                self._kill_confused(horse, report, job)
                return None
            if report is not None:
                return report
            if kill_at is not None and time.monotonic() >= kill_at:
                self.log.warning(
                    "Worker %s: job %s ran past its timeout (%ss) plus %gs; killing work horse %d",
                    self.name,
                    job.id,
                    timeout,
                    self.horse_kill_grace_seconds,
                    horse.pid,
                )
                self.heartbeat(self.job_monitoring_interval + 60)
                self.kill_horse()
                return None
            execution = self.executions.get(order.execution_id)
            if execution is not None:
                self.maintain_heartbeats(job, execution)

    def _kill_confused(self, horse: Horse, report: Report, job: Job) -> None:
        """A report on another job: the channel cannot be trusted, so the job fails as a crash."""
        self.log.error(
            "Worker %s: work horse %d reported on job %s while running %s; killing it",
            self.name,
            horse.pid,
            report.job_id,
            job.id,
        )
        self.kill_horse()

    def _handle_dead_horse(self, horse: Horse, job: Job, queue: Queue, execution: Execution) -> None:
        """rq's `monitor_work_horse` after an unexpected exit: fail the job, unless it had settled."""
        retpid, ret_val, rusage = horse.reap() or (horse.pid, 0, None)
        self._horse = None
        self._spawn_spare()
        try:
            status = job.get_status()
        except InvalidJobOperation:
            return  # finished and already expired
        if self._stopped_job_id == job.id:
            self._handle_stopped_job(job, queue, execution)
        elif status in _UNSETTLED:
            job.ended_at = now()
            signal_msg = f" (signal {os.WTERMSIG(ret_val)})" if ret_val and os.WIFSIGNALED(ret_val) else ""
            exc_string = f"Work-horse terminated unexpectedly; waitpid returned {ret_val}{signal_msg}; "
            self.log.warning("Worker %s: job %s failed (%s)", self.name, job.id, exc_string)
            self.handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]  # rq: untyped
            self.handle_job_failure(job, queue=queue, exc_string=exc_string, execution=execution)
        else:  # its outcome was saved before the horse died: only the execution may be left
            with self.connection.pipeline() as pipeline:
                self.cleanup_execution(job, pipeline=pipeline, execution=execution)
                pipeline.execute()

    def kill_horse(self, sig: signal.Signals = SHUTDOWN_SIGNAL) -> None:
        # rq's reads `horse_pid` twice; between jobs it is 0, and os.getpgid(0) is our own group.
        pid = self.horse_pid
        if not pid:
            self.log.debug("Worker %s: no job running, no work horse to kill", self.name)
            return
        try:
            os.killpg(pid, sig)  # the horse leads its own process group, as rq's does
        except ProcessLookupError:
            try:
                os.kill(pid, sig)  # forked a moment ago: not yet its own group
            except ProcessLookupError:
                self.log.debug("Worker %s: work horse %d already dead", self.name, pid)
                return
        self.log.info("Worker %s: killed work horse %d (%s)", self.name, pid, sig.name)

    def wait_for_horse(self) -> tuple[int | None, int | None, Any]:
        horse = self._horse
        if horse is None or horse.pid != self.horse_pid:
            return super().wait_for_horse()
        status: ExitStatus | None = horse.reap()
        return status if status is not None else (None, None, None)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"PreforkMixin: {name} must be {expected}, got {value!r}")


def _job_hash(worker: Worker, job: Job) -> dict[bytes, bytes] | None:
    """`job` as its Redis hash, for the horse to restore without fetching it; None to make it fetch."""
    try:
        encoder = worker.connection.get_encoder()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        return {key.encode(): encoder.encode(value) for key, value in job.to_dict().items()}
    except Exception:  # an exotic job class: the horse fetches the job instead
        return None


class PreforkRetryWorker(
    MaintenanceMixin, RecoveryMixin, IntermediateCleanupMixin, ShutdownMixin, RetryMixin, PreforkMixin, Worker
):
    """A long-lived forked work horse runs job after job, with our retry policy and crash recovery."""
