"""`WorkerCore`: the rq hooks our workers override, each once, each handing the moment on.

rq's work loop stays rq's. This class sits between our three worker classes and rq's `Worker` or
`SimpleWorker` and overrides the hooks rq calls around a job; behaviour lives in collaborators with
one job each, and a hook only says which of them act, in which order:

- `reconnect` (`worker.safety.reconnect`): the worker's own Redis client, which waits out an outage;
- `loading` (`worker.gate.loading`): a job that must not run (unreadable, too large, refused by the
  job gate) fails on the way out of the dequeue;
- `guard` (`worker.safety.guard`): the lease of each job this worker runs, fencing, a lost lease;
- `recovery` (`worker.safety.recovery`): the thread that settles other workers' crashed jobs;
- `retries` (`worker.retries.handler`): the retry policy on failure, the attempts history;
- `promoter` (`worker.retries.promoter`): the thread that starts due retries on time;
- `chores` (`worker.maintenance.chores`): registered periodic chores (the outbox relay);
- `bookkeeping` (`worker.bookkeeping`): how rq's state, heartbeats and start are written; the
  round-trip shortcuts of `worker.shortcuts` are strategies for it, and the core does not need them;
- `runner` (`worker.execution.runner`): how a job runs (rq's fork or in-process, or `Prefork`);
- `metrics` (`worker.metrics`, optional): counters in the pipeline that saves each outcome.

The moments others may hear (`worker.events`: started, retrying, exhausted, recovered) are emitted
by the collaborator that makes them happen; the core emits only ``started``, from the job's start.

What one hook learns about a job that a later hook needs is kept in that job's `Run` (`self.run`).
rq's private names are spelt only in `worker.rq_compat`; see docs/architecture.md for the map.
"""

from __future__ import annotations

import threading
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from rq.executions import Execution
from rq.worker import BaseWorker, WorkerStatus
from rq.worker.base import SHUTDOWN_SIGNAL

from worker import events
from worker.bookkeeping import Bookkeeping, Dequeued
from worker.execution.runner import ExitStatus, Runner
from worker.gate.gate import JobGate
from worker.gate.limits import JobLimits
from worker.gate.loading import JobLoading, gate_for, limits_for
from worker.maintenance import registries
from worker.maintenance.chores import Chores
from worker.metrics import JobMetrics, installed_job_metrics
from worker.retries.handler import RetryHandler
from worker.retries.promoter import Promoter
from worker.retries.rq_scheduler import start_scheduler
from worker.rq_compat import private as rq_private
from worker.run import Run
from worker.safety import shutdown
from worker.safety.guard import LeaseGuard, check_lease_settings
from worker.safety.orphans import die_with_parent
from worker.safety.reconnect import Reconnect
from worker.safety.recovery import Recovery

if TYPE_CHECKING:
    import signal

    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue
    from rq.registry import StartedJobRegistry


@rq_private.start_scheduler_hook
class WorkerCore(BaseWorker):
    """Our behaviour on rq's worker, by composition; see the module docstring. Goes before rq's
    `Worker` or `SimpleWorker` in a class's bases (`worker.workers`)."""

    #: Seconds a job's lease lasts unrenewed before its worker is presumed dead.
    lease_ttl: float = 15.0
    #: Seconds between two scans of this worker's queues for expired leases.
    recovery_interval: float = 5.0
    #: Seconds of safety between fencing and claiming: a worker stops its job once the lease has gone
    #: `lease_ttl - fence_margin` seconds without a renewal getting through, and other workers claim
    #: it only `fence_margin` seconds past its expiry (see `worker.safety.fencing`). None: `lease_ttl / 6`
    #: (2.5 s of a 15 s lease). Larger is safer against clock steps and slower to recover a dead
    #: worker's job; smaller lets a job ride out longer Redis outages.
    fence_margin: float | None = None
    #: Longest wait between two attempts to reach Redis, seconds.
    reconnect_backoff_cap: float = 2.0
    #: The job gate and job limits when none is given (else the installed ones; see `worker.gate`).
    job_gate: JobGate | None = None
    job_limits: JobLimits | None = None
    #: What the worker counts in Redis (`worker.metrics`) when none is given (else the installed one).
    job_metrics: JobMetrics | None = None
    #: How rq's bookkeeping is written (`worker.shortcuts` for fewer round trips) and how jobs run.
    bookkeeping_class: ClassVar[type[Bookkeeping]] = Bookkeeping
    runner_class: ClassVar[type[Runner]] = Runner

    promoter: Promoter | None = None
    run: Run | None = None

    def __init__(
        self,
        *args: Any,
        lease_ttl: float | None = None,
        recovery_interval: float | None = None,
        fence_margin: float | None = None,
        job_gate: JobGate | None = None,
        job_limits: JobLimits | None = None,
        job_metrics: JobMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        gate = gate_for(job_gate if job_gate is not None else type(self).job_gate, kwargs)
        super().__init__(*args, **kwargs)
        self.job_gate = gate
        self.job_limits = limits_for(job_limits or type(self).job_limits)
        self.loading = JobLoading(self, gate, self.job_limits)
        self.metrics = job_metrics or type(self).job_metrics or installed_job_metrics()
        self.reconnect = Reconnect(self, backoff_cap=self.reconnect_backoff_cap)
        self.redis_retry = self.reconnect.retry
        self.lease_ttl, self.job_monitoring_interval, self.fence_margin = check_lease_settings(
            lease_ttl if lease_ttl is not None else self.lease_ttl,
            fence_margin if fence_margin is not None else self.fence_margin,
            self.job_monitoring_interval,
        )
        self.recovery_interval = float(
            recovery_interval if recovery_interval is not None else self.recovery_interval
        )
        self.guard = LeaseGuard(
            self,
            self.redis_retry,
            lease_ttl=self.lease_ttl,
            margin=self.fence_margin,
            renew_every=self.job_monitoring_interval,
        )
        self.recovery = Recovery(
            self,
            lease_ttl=self.lease_ttl,
            interval=self.recovery_interval,
            margin=self.fence_margin,
            seconds_since_trouble=self.seconds_since_redis_trouble,
            scan=self.recover_crashed_jobs,
        )
        self.retries = RetryHandler(self)
        self.chores = Chores()
        self.bookkeeping = self.bookkeeping_class(self)
        self.runner = self.runner_class(self)

    # -- the worker's life ----------------------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        self.bookkeeping.bootstrap()
        super().bootstrap(*args, **kwargs)
        self.runner.started()  # the prefork horse: forked before our threads (rq's pub/sub one runs already)
        self.promoter = Promoter(self.connection, self.queues, job_class=self.job_class, name=self.name)
        self.promoter.start()
        self.recovery.start()
        self.chores.start()

    def teardown(self) -> None:
        self.chores.stop()
        self.recovery.stop()
        self.guard.close()
        if not self.is_horse and self.promoter is not None:
            self.promoter.stop()
            self.promoter = None
        self.runner.stopping()
        self.bookkeeping.teardown()
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        # No renewal while a cold shutdown puts the job back: it would find the job claimed and exit.
        with self.guard.renewals_held():
            shutdown.stop_cold(self, signum)

    def subscribe(self) -> None:
        shutdown.subscribe(self)

    def unsubscribe(self) -> None:
        shutdown.unsubscribe(self)

    def start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        """`--with-scheduler`: rq's scheduler, minus our retries (`worker.retries.rq_scheduler`)."""
        start_scheduler(self, *args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        self.reconnect.run_maintenance(super().run_maintenance_tasks)

    def clean_registries(self) -> None:
        registries.clean_registries(self)

    def clean_group_registries(self) -> None:
        registries.clean_group_registries(self, super().clean_group_registries)

    def recover_crashed_jobs(self) -> int:
        """Settle each job of its queues whose lease expired; how many (`worker.safety.recovery`)."""
        return self.recovery.recover_crashed_jobs()

    def rescue_dequeued_jobs(self) -> int:
        """Put back each job a dead worker dequeued and never started; how many."""
        return self.recovery.rescue_dequeued_jobs()

    def seconds_since_redis_trouble(self) -> float | None:
        """Seconds since this worker last could not reach Redis; None if it always could."""
        return self.reconnect.seconds_since_trouble()

    # -- between jobs ---------------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Dequeued:
        rq_dequeue, rq_check = super().dequeue_job_and_maintain_ttl, super().check_for_suspension
        return self.loading.dequeue(
            lambda: self.bookkeeping.dequeue(timeout, max_idle_time, rq_dequeue, rq_check)
        )

    def check_for_suspension(self, burst: bool) -> None:
        self.bookkeeping.check_for_suspension(burst, super().check_for_suspension)

    def set_state(self, state: str, pipeline: Pipeline[Any] | None = None) -> None:
        self.bookkeeping.set_state(state, pipeline, super().set_state)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline[Any] | None = None) -> None:
        self.bookkeeping.heartbeat(timeout, pipeline, super().heartbeat)

    def register_death(self) -> None:
        self.bookkeeping.register_death(super().register_death)

    # -- one job --------------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        run = self.run = Run(job.id, executing=True)
        try:
            self.runner.execute_job(job, queue, super().execute_job)
        finally:
            run.executing = False
            self.guard.stop_watching()
            self.run = None
        self.bookkeeping.job_ran()

    def prepare_execution(self, job: Job) -> Execution:
        run = self._run_of(job)
        return self.guard.start(job, run, partial(self._send_start, job, run))

    def _send_start(self, job: Job, run: Run) -> Execution:
        """rq's `prepare_execution` and the lease in one transaction, with rq's preparation of the job
        too when the bookkeeping strategy joins it."""
        joined = self.bookkeeping.joins_start(run)
        with self.connection.pipeline() as pipeline:
            execution = Execution.create(
                job, self.get_heartbeat_ttl(job), pipeline=pipeline, worker_name=self.name
            )
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            self.guard.queue_lease(pipeline, job, execution, run)
            if joined:
                self.bookkeeping.queue_preparation(job, pipeline)
            # Before the send: when Redis has lost the lease script the rest of the transaction still
            # runs (`LeaseGuard.start` recovers), the preparation included.
            run.prepared = joined
            pipeline.execute()
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        self.bookkeeping.prepare_job_execution(
            job, self._current_run(job), remove_from_intermediate_queue, super().prepare_job_execution
        )
        events.emit_started(job)  # in the process that runs the job, just before its function

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        if self.pid:
            die_with_parent(self.pid)
        super().main_work_horse(job, queue)

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        super().maintain_heartbeats(job, execution)
        self.guard.renew(job, execution, self._current_run(job))

    def kill_horse(self, sig: signal.Signals = SHUTDOWN_SIGNAL) -> None:
        self.runner.kill_horse(sig, super().kill_horse)

    def wait_for_horse(self) -> ExitStatus:
        return self.runner.wait_for_horse(super().wait_for_horse)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        self._run_of(job).exception = exc if isinstance(exc, BaseException) else None
        super().handle_exception(job, *exc_info)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        self.guard.note_horse_killed(job, self._run_of(job), retpid, ret_val)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        self.bookkeeping.execution_ended(
            job, queue, heartbeat_ttl, self._current_run(job), super().handle_execution_ended
        )

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        run = self._run_of(job)
        if self.guard.settles_failure(job, queue, run, execution):
            return
        rq_failure = super().handle_job_failure
        self.retries.job_failed(
            job,
            queue,
            run,
            exc_string,
            execution,
            lambda exc_string: rq_failure(job, queue, started_job_registry, exc_string, execution),
        )

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        run = self._run_of(job)
        run.outcome = "succeeded"
        rq_success = partial(super().handle_job_success, job, queue, started_job_registry, execution)
        self.reconnect.save_success(job, lambda: self.retries.job_succeeded(job, run, rq_success))

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        self.guard.stop_watching()  # before the job's outcome is saved: no renewal after it
        super().cleanup_execution(job, pipeline, execution)
        run = self._current_run(job)
        self.bookkeeping.add_to_outcome(job, pipeline, run)
        self.retries.add_to_outcome(job, pipeline, run)
        if self.metrics is not None:
            self.metrics.add_to_outcome(job, pipeline, run.outcome if run is not None else None)
        self.guard.queue_release(pipeline, job, execution)

    # -- the run of a job -----------------------------------------------------------------------------

    def _current_run(self, job: Job) -> Run | None:
        run = self.run
        return run if run is not None and run.job_id == job.id else None

    def _run_of(self, job: Job) -> Run:
        """`job`'s run: the work loop's, or, for a hook called outside it on the main thread (rq's own
        tests call `perform_job` by hand), a run started here."""
        run = self._current_run(job)
        if run is None:
            run = Run(job.id)
            if threading.current_thread() is threading.main_thread():
                self.run = run
        return run
