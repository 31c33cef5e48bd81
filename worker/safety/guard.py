"""`LeaseGuard`: the lease on each job this worker runs, and what happens when it cannot be kept.

Every running job holds a lease (see `worker.safety.leases`), written in the transaction that
starts it and renewed every `job_monitoring_interval` seconds: by rq's horse monitor in
`RetryWorker` and the prefork worker, by one long-lived thread (`leases.LeaseKeeper`) when the job
runs in the worker's own process (`SimpleRetryWorker`). A worker whose lease has gone unrenewed for
`lease_ttl - fence_margin` seconds stops its run without waiting for Redis (`worker.safety.fencing`);
a worker that finds its lease claimed by another stops its run too. The outcome of a stopped run
is not saved: the worker that claims the lease settles the job (`worker.safety.recovery`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError
from rq.worker import Worker

from worker.exceptions import WorkerCrashed
from worker.rq_compat import layout as rq_layout
from worker.safety import crashes, fencing, leases

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

    from worker.run import Run
    from worker.safety.reconnect import ReportingRetry


def check_lease_settings(
    lease_ttl: float, fence_margin: float | None, job_monitoring_interval: float
) -> tuple[float, int, float]:
    """`lease_ttl`, the heartbeat interval and `fence_margin` a worker uses, or a ValueError naming
    the setting that cannot work. The interval is whole seconds (rq's horse monitor uses
    `signal.alarm`), shortened to give at least three renewals per lease."""
    ttl = float(lease_ttl)
    if ttl < 3:
        raise ValueError(f"Worker: lease_ttl must be at least 3 seconds, got {lease_ttl!r}")
    interval = max(1, min(int(job_monitoring_interval), int(ttl // 3)))
    margin = float(fence_margin if fence_margin is not None else ttl / 6)
    if not 0 < margin <= ttl - 2 * interval:
        raise ValueError(
            f"Worker: fence_margin must be > 0 and leave two renewals ({interval}s apart) within "
            f"lease_ttl={ttl:g}, got {margin!r}"
        )
    return ttl, interval, margin


class LeaseGuard:
    """The leases of `worker`'s own jobs: written at start, renewed, fenced, dropped at the end."""

    def __init__(
        self,
        worker: BaseWorker,
        retry: ReportingRetry,
        *,
        lease_ttl: float,
        margin: float,
        renew_every: float,
    ) -> None:
        self.worker = worker
        self.retry = retry
        self.lease_ttl = lease_ttl
        self.fence = fencing.Fence(
            self._stop_fenced_run, lease_ttl=lease_ttl, margin=margin, log=worker.log, name="rq-signals-fence"
        )
        self.keeper = leases.LeaseKeeper(
            worker.maintain_heartbeats, renew_every, name="rq-signals-lease-keeper"
        )

    # -- the start ----------------------------------------------------------------------------------

    def start(self, job: Job, run: Run, send_start: Callable[[], Execution]) -> Execution:
        """Send `job`'s start transaction (`send_start`, which calls `queue_lease`), then watch its lease."""
        lease_sent_at = time.monotonic()  # before the lease is written: see `worker.safety.fencing`
        failures_before = self.retry.failures_here()
        try:
            execution = send_start()
        except NoScriptError:
            # Redis lost its scripts (restart, failover, SCRIPT FLUSH) since this worker last sent the
            # lease script: the rest of the transaction ran (see `leases.add_lease`); start the lease now.
            starting = run.starting
            if starting is None or starting.job_id != job.id:
                raise
            self.worker.log.info("Job %s: Redis had lost the lease script; sending it again", job.id)
            leases.restore_lease(self.worker.connection, job.origin, starting.composite_key, self.lease_ttl)
            execution = starting
        if self.retry.failures_here() != failures_before:
            # Redis was out of reach as the job started, so when its lease was written is unknown: renew
            # it, and count from that renewal rather than fence a job whose code has not run yet.
            renewed, sent_at = self._renew(job, execution)
            if renewed == 1:
                lease_sent_at = sent_at
        if run.executing:
            # Code that calls prepare_execution by hand (rq's own tests do) may never end the execution;
            # a fence armed there would stop this process a lease later, whatever it was doing by then.
            self.fence.arm(job.id, lease_sent_at)
        if not isinstance(self.worker, Worker):  # the job runs in this process: nothing else renews its lease
            self.keeper.arm(job, execution)
        return execution

    def queue_lease(self, pipeline: Pipeline[Any], job: Job, execution: Execution, run: Run) -> None:
        """The lease, in the transaction that starts `execution`: no started job without a lease."""
        leases.add_lease(pipeline, job.origin, execution.composite_key, self.lease_ttl)
        # A sighting of this id stuck in the intermediate list is over: time a later one afresh.
        intermediate = rq_layout.intermediate_key(self.worker, job.origin)
        pipeline.delete(rq_layout.first_seen_key(intermediate, job.id))
        run.starting = execution

    # -- while it runs ------------------------------------------------------------------------------

    def renew(self, job: Job, execution: Execution, run: Run | None) -> None:
        """After rq's heartbeat: renew the lease, or stop the run if another worker claimed it."""
        if self.fence.is_fenced(job.id):
            return  # its run is stopped: the lease is left to run out and be claimed
        renewed, sent_at = self._renew(job, execution)
        if renewed == 1:
            self.fence.renewed(job.id, sent_at)
        elif renewed == -1:
            self._lost_lease(job, run)

    def _renew(self, job: Job, execution: Execution) -> tuple[int, float]:
        """`leases.renew_lease`'s outcome, and when (`time.monotonic()`) the attempt that got through left."""
        called_at = time.monotonic()
        renewed = leases.renew_lease(
            self.worker.connection, job.origin, execution.composite_key, self.lease_ttl
        )
        return renewed, max(called_at, self.retry.last_attempt_sent_at(default=called_at))

    def _stop_fenced_run(self, job_id: str) -> bool:
        """Stop the fenced run of `job_id` without touching Redis (see `fencing.Fence`); whether it is."""
        worker = self.worker
        if not isinstance(worker, Worker):
            fencing.exit_fenced(worker.log, worker.name, job_id)
        pid = worker.horse_pid
        if not pid:
            return False  # the horse is not forked yet (or already reaped): the fence tries again
        fencing.kill_horse(pid)
        worker.log.error("Worker %s: killed work horse %d running job %s (fenced)", worker.name, pid, job_id)
        return True

    def _lost_lease(self, job: Job, run: Run | None) -> None:
        worker = self.worker
        if run is not None:
            run.lease_lost = True
        why = (
            f"Job {job.id}: worker {worker.name} was cut off for longer than its lease "
            "and another worker recovered the job"
        )
        if worker.horse_pid:
            worker.log.error("%s; killing work horse %s", why, worker.horse_pid)
            worker.kill_horse()
        else:
            worker.log.critical("%s; exiting so that it does not run twice", why)
            os._exit(1)

    @contextmanager
    def renewals_held(self) -> Iterator[None]:
        """No renewal is under way or starts while inside (a cold shutdown puts the job back)."""
        with self.keeper.held():
            yield

    # -- the end ------------------------------------------------------------------------------------

    def stop_watching(self) -> None:
        """The job ends (or its outcome is about to be saved): no renewal, no fencing after this."""
        self.keeper.disarm()
        self.fence.disarm()

    def queue_release(self, pipeline: Pipeline[Any], job: Job, execution: Execution | None) -> None:
        """Drop the lease in the pipeline that saves the job's outcome."""
        if execution is not None:
            leases.drop_lease(pipeline, job.origin, execution.composite_key)

    def note_horse_killed(self, job: Job, run: Run, retpid: int, ret_val: int) -> None:
        """rq found the horse dead mid-job: say how, for the failure that follows."""
        if ret_val and os.WIFSIGNALED(ret_val):
            number = os.WTERMSIG(ret_val)
            how = f"was killed by signal {number} ({signal.Signals(number).name})"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(ret_val) if ret_val else ret_val}"
        run.horse_crash = f"work horse {retpid} of worker {self.worker.name} {how}"

    def settles_failure(self, job: Job, queue: Queue, run: Run, execution: Execution | None) -> bool:
        """Whether this failure is settled here: a fenced run or a lost lease (dropped: the recovering
        worker owns the job), or a horse that died under a job with a retry policy (retried or failed)."""
        log = self.worker.log
        crash, run.horse_crash = run.horse_crash, None
        if self.fence.is_fenced(job.id):
            log.warning("Job %s: run stopped by fencing; left to the worker that claims its lease", job.id)
            return True
        if run.lease_lost:
            run.lease_lost = False
            log.warning("Job %s: outcome of this run dropped; the recovering worker owns the job", job.id)
            return True
        if crash is not None:
            exc = WorkerCrashed(f"Job {job.id}: {crash} mid-job (out of memory?)")
            return crashes.fail_crashed_horse(self.worker, job, queue, exc, execution=execution)
        return False

    def close(self) -> None:
        self.keeper.close()
        self.fence.close()
