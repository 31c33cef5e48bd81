"""A crash-isolated worker without a fork per job: one long-lived work horse runs job after job.

rq's `Worker` forks a horse for every job (a fork and a fresh Redis connection, ~13 ms); its
`SimpleWorker` runs jobs in the worker itself, so a job that segfaults or calls `os._exit` takes
the worker down. `Prefork` forks a horse once (`worker.execution.horse`) and hands it job after job
over a socket pair; the worker keeps rq's bookkeeping (dequeue, executions, heartbeats, timeouts,
stop-job and shutdown commands) exactly where rq's forking worker has it, so the rest of the worker
sees the same hooks called in the same process. When the horse dies mid-job (segfault, `os._exit`,
SIGKILL, the OOM killer, or killed by us after its job's timeout plus `horse_kill_grace_seconds`),
that job alone fails through rq's crash path (`handle_work_horse_killed`, `handle_job_failure`,
so its retry policy applies) and the next job runs in a fresh horse. A horse is also replaced after
`max_jobs_per_horse` jobs, or after a job that leaves it above `max_horse_rss_mb` of resident
memory, which bounds leaks and state left behind by jobs: unlike a fork per job, jobs run by one
horse share its module state, as they would under `SimpleWorker`.

Round trips: 5 per job where rq's workers make 20 to 24, the job travelling to the horse in its
order (no refetch) and the rest in `worker.shortcuts.prefork_bookkeeping`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import WorkerStatus

from worker.execution.horse import Horse, Order, Report
from worker.execution.runner import ExitStatus, Runner
from worker.rq_compat import private as rq_private
from worker.safety import fencing

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.worker import Worker

#: Statuses of a job whose horse died before saving its outcome: the crash is its outcome.
_UNSETTLED = (JobStatus.QUEUED, JobStatus.STARTED)


class Prefork(Runner):
    """Runs jobs in a long-lived forked horse; see the module docstring. Reads the worker's
    `max_jobs_per_horse`, `max_horse_rss_mb` and `horse_kill_grace_seconds`."""

    worker: Worker

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        _check(
            worker.max_jobs_per_horse >= 1,  # type: ignore[attr-defined]
            "max_jobs_per_horse",
            worker.max_jobs_per_horse,  # type: ignore[attr-defined]
            "a whole number >= 1",
        )
        rss = worker.max_horse_rss_mb  # type: ignore[attr-defined]
        _check(
            rss is None or rss > 0,
            "max_horse_rss_mb",
            rss,
            "a number of MB > 0, or None (class attribute) for no limit",
        )
        grace = worker.horse_kill_grace_seconds  # type: ignore[attr-defined]
        _check(grace >= 0, "horse_kill_grace_seconds", grace, ">= 0")
        self.horse: Horse | None = None

    # -- the horse's life ---------------------------------------------------------------------------

    def started(self) -> None:
        self._spawn_spare()  # ready before the first job; it connects to Redis while we dequeue

    def stopping(self) -> None:
        if self.horse is not None and not self.worker.is_horse:
            self._retire_horse(self.horse)

    def _spawn_horse(self) -> Horse:
        self.horse = Horse.spawn(self.worker)
        self.worker.log.debug("Worker %s: forked work horse %d", self.worker.name, self.horse.pid)
        return self.horse

    def _spawn_spare(self) -> None:
        """Fork the next horse now, between jobs, unless stopping; if forking fails, the next job retries."""
        if rq_private.stop_requested(self.worker):
            return
        try:
            self._spawn_horse()
        except OSError as exc:
            self.worker.log.error(
                "Worker %s: cannot fork a work horse (%s); trying again for the next job",
                self.worker.name,
                exc,
            )

    def _ready_horse(self) -> Horse:
        horse = self.horse
        if horse is None or not horse.alive():
            if horse is not None:
                self.worker.log.warning(
                    "Worker %s: idle work horse %d died; forking another", self.worker.name, horse.pid
                )
            horse = self._spawn_horse()
        return horse

    def _retire_horse(self, horse: Horse) -> None:
        self.horse = None
        if not horse.retire():
            self.worker.log.warning(
                "Worker %s: work horse %d did not exit when retired; killed it", self.worker.name, horse.pid
            )

    def _after_report(self, horse: Horse, report: Report) -> None:
        worker = self.worker
        horse.jobs_done += 1
        rss_mb = report.rss_bytes / (1024 * 1024)
        limit_mb = worker.max_horse_rss_mb  # type: ignore[attr-defined]
        if horse.jobs_done >= worker.max_jobs_per_horse:  # type: ignore[attr-defined]
            why = f"ran {horse.jobs_done} jobs"
        elif limit_mb is not None and rss_mb > limit_mb:
            why = f"uses {rss_mb:.0f} MB, over {limit_mb:g} MB"
        else:
            return
        worker.log.info("Worker %s: replacing work horse %d, which %s", worker.name, horse.pid, why)
        self._retire_horse(horse)
        self._spawn_spare()

    # -- one job --------------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue, rq: Callable[[Job, Queue], None]) -> None:
        worker = self.worker
        horse = self._ready_horse()
        execution = worker.prepare_execution(job)
        run = worker.run  # type: ignore[attr-defined]  # the core's: started by its execute_job
        order = Order(
            job.id,
            queue.name,
            execution.id,
            execution.created_at.timestamp(),
            _job_hash(worker, job),
            prepared=run.prepared,
        )
        run.prepared = False  # the horse does the rest of it
        if not horse.send(order):  # it died since we looked: the job has not started, give it another
            horse = self._ready_horse()
            horse.send(order)  # if this one is dead already, `_watch` sees it and the job fails
        job.started_at = now()
        rq_private.set_horse_pid(worker, horse.pid)  # rq's kill_horse, stop-job and cold shutdown act on it
        try:
            report = self._watch(horse, job, order)
        finally:
            rq_private.set_horse_pid(worker, 0)
            worker.executions.pop(execution.id, None)
        if report is not None:
            self._after_report(horse, report)
            self._note_idle()
            return
        self._handle_dead_horse(horse, job, queue, execution)
        with worker.connection.pipeline() as pipeline:
            worker.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            worker.heartbeat(pipeline=pipeline)
            pipeline.execute()

    def _note_idle(self) -> None:
        """The horse's outcome pipeline marked the worker idle and alive, if its bookkeeping does so."""
        note = getattr(self.worker.bookkeeping, "note_horse_saved_idle", None)  # type: ignore[attr-defined]
        if note is not None:
            note()
            return
        with self.worker.connection.pipeline() as pipeline:
            self.worker.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.worker.heartbeat(pipeline=pipeline)
            pipeline.execute()

    def _watch(self, horse: Horse, job: Job, order: Order) -> Report | None:
        """Wait for the horse's report, heartbeating; None if it died or was killed."""
        worker = self.worker
        timeout = job.timeout or worker.queue_class.DEFAULT_TIMEOUT
        grace = worker.horse_kill_grace_seconds  # type: ignore[attr-defined]
        kill_at = None if timeout == -1 else time.monotonic() + timeout + grace
        while True:
            wait = float(worker.job_monitoring_interval)
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
                worker.log.warning(
                    "Worker %s: job %s ran past its timeout (%ss) plus %gs; killing work horse %d",
                    worker.name,
                    job.id,
                    timeout,
                    grace,
                    horse.pid,
                )
                worker.heartbeat(worker.job_monitoring_interval + 60)
                worker.kill_horse()
                return None
            execution = worker.executions.get(order.execution_id)
            if execution is not None:
                worker.maintain_heartbeats(job, execution)

    def _kill_confused(self, horse: Horse, report: Report, job: Job) -> None:
        """A report on another job: the channel cannot be trusted, so the job fails as a crash."""
        self.worker.log.error(
            "Worker %s: work horse %d reported on job %s while running %s; killing it",
            self.worker.name,
            horse.pid,
            report.job_id,
            job.id,
        )
        self.worker.kill_horse()

    def _handle_dead_horse(self, horse: Horse, job: Job, queue: Queue, execution: Execution) -> None:
        """rq's `monitor_work_horse` after an unexpected exit: fail the job, unless it had settled."""
        worker = self.worker
        retpid, ret_val, rusage = horse.reap() or (horse.pid, 0, None)
        self.horse = None
        self._spawn_spare()
        try:
            status = job.get_status()
        except InvalidJobOperation:
            return  # finished and already expired
        if rq_private.stopped_job_id(worker) == job.id:
            rq_private.handle_stopped_job(worker, job, queue, execution)
        elif status in _UNSETTLED:
            job.ended_at = now()
            signal_msg = f" (signal {os.WTERMSIG(ret_val)})" if ret_val and os.WIFSIGNALED(ret_val) else ""
            exc_string = f"Work-horse terminated unexpectedly; waitpid returned {ret_val}{signal_msg}; "
            worker.log.warning("Worker %s: job %s failed (%s)", worker.name, job.id, exc_string)
            worker.handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]  # rq: untyped
            worker.handle_job_failure(job, queue=queue, exc_string=exc_string, execution=execution)
        else:  # its outcome was saved before the horse died: only the execution may be left
            with worker.connection.pipeline() as pipeline:
                worker.cleanup_execution(job, pipeline=pipeline, execution=execution)
                pipeline.execute()

    def kill_horse(self, sig: signal.Signals, rq: Callable[[signal.Signals], None]) -> None:
        # rq's reads `horse_pid` twice; between jobs it is 0, and os.getpgid(0) is our own group.
        worker = self.worker
        pid = worker.horse_pid
        if not pid:
            worker.log.debug("Worker %s: no job running, no work horse to kill", worker.name)
            return
        if not fencing.kill_horse(pid, sig):
            worker.log.debug("Worker %s: work horse %d already dead", worker.name, pid)
            return
        worker.log.info("Worker %s: killed work horse %d (%s)", worker.name, pid, sig.name)

    def wait_for_horse(self, rq: Callable[[], ExitStatus]) -> ExitStatus:
        horse = self.horse
        if horse is None or horse.pid != self.worker.horse_pid:
            return rq()
        status = horse.reap()
        return status if status is not None else (None, None, None)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"PreforkRetryWorker: {name} must be {expected}, got {value!r}")


def _job_hash(worker: Worker, job: Job) -> dict[bytes, bytes] | None:
    """`job` as its Redis hash, for the horse to restore without fetching it; None to make it fetch."""
    try:
        encoder = worker.connection.get_encoder()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        return {key.encode(): encoder.encode(value) for key, value in job.to_dict().items()}
    except Exception:  # an exotic job class: the horse fetches the job instead
        return None
