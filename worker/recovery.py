"""Short heartbeats and recovery of jobs whose worker died.

rq notices a dead worker's job only when its started-registry entry expires (a minute past the
last heartbeat, or the job timeout plus a minute for `SimpleWorker`, which does not heartbeat during
a job) and a 10-minute maintenance pass comes round. Here every running job holds a lease (see
`worker.leases`) renewed every `job_monitoring_interval` seconds (at most a third of `lease_ttl`)
once the job has run that long: by rq's horse monitor in `RetryWorker`, by one long-lived thread
per worker process in `SimpleRetryWorker` (`leases.LeaseKeeper`). Every worker scans its queues
every `recovery_interval` seconds; a job whose lease expired is claimed by exactly one worker and
retried or failed under its policy, the crash recorded as a `WorkerCrashed` attempt.
Jobs without a policy get what rq's own cleanup gives them (rq's `Retry`, else the failed registry).
The same scan puts back on its queue a job that a worker dequeued (rq's LMOVE to the queue's
intermediate list) and died before starting, once seen stuck `lease_ttl + fence_margin` seconds: it
holds no lease to expire (`worker.intermediate`).

Never twice at once: a horse dies with its worker (`worker.orphans`); a worker whose lease has gone
unrenewed for `lease_ttl - fence_margin` seconds (cut off from Redis, or Redis down) stops its run
without waiting for Redis, by killing the horse or, when the job runs in the worker's own process,
by exiting (`worker.fencing`), and claimers wait `fence_margin` seconds past a lease's expiry, so
the stopped run is dead before the recovered one starts; a worker that finds its lease claimed by
another stops its run too. After a Redis restart, or an outage the scanning worker saw itself, no
lease is judged until a whole `lease_ttl` has passed, so every live worker has renewed first.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

from redis.exceptions import NoScriptError, ResponseError
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import parse_composite_key
from rq.worker import Worker

from worker import crashes, fencing, intermediate, leases
from worker.connection import ReconnectMixin
from worker.exceptions import WorkerCrashed
from worker.lean import ExecutionStartMixin
from worker.limits import unloadable
from worker.orphans import die_with_parent
from worker.threads import surviving

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.queue import Queue

Outcome = Literal["retrying", "failed"]


class RecoveryMixin(ReconnectMixin, ExecutionStartMixin):
    """Leases on running jobs, a horse that dies with its worker, and recovery of crashed jobs."""

    #: Seconds a job's lease lasts unrenewed before its worker is presumed dead.
    lease_ttl: float = 15.0
    #: Seconds between two scans of this worker's queues for expired leases.
    recovery_interval: float = 5.0
    #: Seconds of safety between fencing and claiming: a worker stops its job once the lease has gone
    #: `lease_ttl - fence_margin` seconds without a renewal getting through, and other workers claim
    #: it only `fence_margin` seconds past its expiry (see `worker.fencing`). None: `lease_ttl / 6`
    #: (2.5 s of a 15 s lease). Larger is safer against clock steps and slower to recover a dead
    #: worker's job; smaller lets a job ride out longer Redis outages.
    fence_margin: float | None = None

    def __init__(
        self,
        *args: Any,
        lease_ttl: float | None = None,
        recovery_interval: float | None = None,
        fence_margin: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lease_ttl = float(lease_ttl if lease_ttl is not None else self.lease_ttl)
        self.recovery_interval = float(
            recovery_interval if recovery_interval is not None else self.recovery_interval
        )
        if self.lease_ttl < 3:
            raise ValueError(f"RecoveryMixin: lease_ttl must be at least 3 seconds, got {self.lease_ttl!r}")
        # Whole seconds (rq's horse monitor uses signal.alarm); at least three renewals per lease.
        self.job_monitoring_interval = max(
            1, min(int(self.job_monitoring_interval), int(self.lease_ttl // 3))
        )
        margin = fence_margin if fence_margin is not None else self.fence_margin
        self.fence_margin = float(margin if margin is not None else self.lease_ttl / 6)
        if not 0 < self.fence_margin <= self.lease_ttl - 2 * self.job_monitoring_interval:
            raise ValueError(
                f"RecoveryMixin: fence_margin must be > 0 and leave two renewals "
                f"({self.job_monitoring_interval}s apart) within lease_ttl={self.lease_ttl:g}, "
                f"got {self.fence_margin!r}"
            )
        self._fence: fencing.Fence = fencing.Fence(
            self._stop_fenced_run,
            lease_ttl=self.lease_ttl,
            margin=self.fence_margin,
            log=self.log,
            name="rq-signals-fence",
        )
        self._recovery_stop = threading.Event()
        self._executing_job = False  # inside execute_job: only the work loop's jobs are fenced
        self._lease_lost_job_id: str | None = None
        self._horse_crash: tuple[str, str] | None = None
        self._starting_execution: Execution | None = None
        self._lease_keeper = leases.LeaseKeeper(
            self.maintain_heartbeats, self.job_monitoring_interval, name="rq-signals-lease-keeper"
        )

    # -- leases of this worker's own jobs ----------------------------------------------------------

    def prepare_execution(self, job: Job) -> Execution:
        lease_sent_at = time.monotonic()  # before the lease is written: see `worker.fencing`
        failures_before = self.redis_retry.failures_here()
        try:
            execution = super().prepare_execution(job)
        except NoScriptError:
            # Redis lost its scripts (restart, failover, SCRIPT FLUSH) since this worker last sent the
            # lease script: the rest of the transaction ran (see `leases.add_lease`); start the lease now.
            starting = self._starting_execution
            if starting is None or starting.job_id != job.id:
                raise
            self.log.info("Job %s: Redis had lost the lease script; sending it again", job.id)
            leases.restore_lease(self.connection, job.origin, starting.composite_key, self.lease_ttl)
            execution = starting
        if self.redis_retry.failures_here() != failures_before:
            # Redis was out of reach as the job started, so when its lease was written is unknown: renew
            # it, and count from that renewal rather than fence a job whose code has not run yet.
            renewed, sent_at = self._renew_lease(job, execution)
            if renewed == 1:
                lease_sent_at = sent_at
        if self._executing_job:
            # Code that calls prepare_execution by hand (rq's own tests do) may never end the execution;
            # a fence armed there would stop this process a lease later, whatever it was doing by then.
            self._fence.arm(job.id, lease_sent_at)
        if not isinstance(self, Worker):  # the job runs in this process: nothing else renews its lease
            self._lease_keeper.arm(job, execution)
        return execution

    def queue_execution_start(self, job: Job, pipeline: Pipeline[Any]) -> Execution:
        # rq's prepare_execution plus the lease, in one transaction: no started job without a lease.
        self._lease_lost_job_id = None
        execution = super().queue_execution_start(job, pipeline)
        leases.add_lease(pipeline, job.origin, execution.composite_key, self.lease_ttl)
        # A sighting of this id stuck in the intermediate list is over: time a later one afresh.
        pipeline.delete(intermediate.first_seen_key(self._intermediate_key(job.origin), job.id))
        self._starting_execution = execution
        return execution

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        self._lease_keeper.disarm()  # before the job's outcome is saved: no renewal after it
        self._fence.disarm()
        super().cleanup_execution(job, pipeline, execution)
        if execution is not None:
            leases.drop_lease(pipeline, job.origin, execution.composite_key)

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        super().maintain_heartbeats(job, execution)
        if self._fence.is_fenced(job.id):
            return  # its run is stopped: the lease is left to run out and be claimed
        renewed, sent_at = self._renew_lease(job, execution)
        if renewed == 1:
            self._fence.renewed(job.id, sent_at)
        elif renewed == -1:
            self._lost_lease(job)

    def _renew_lease(self, job: Job, execution: Execution) -> tuple[int, float]:
        """`leases.renew_lease`'s outcome, and when (`time.monotonic()`) the attempt that got through left."""
        called_at = time.monotonic()
        renewed = leases.renew_lease(self.connection, job.origin, execution.composite_key, self.lease_ttl)
        return renewed, max(called_at, self.redis_retry.last_attempt_sent_at(default=called_at))

    def _stop_fenced_run(self, job_id: str) -> bool:
        """Stop the fenced run of `job_id` without touching Redis (see `fencing.Fence`); whether it is."""
        if not isinstance(self, Worker):
            fencing.exit_fenced(self.log, self.name, job_id)
        pid = self.horse_pid
        if not pid:
            return False  # the horse is not forked yet (or already reaped): the fence tries again
        fencing.kill_horse(pid)
        self.log.error("Worker %s: killed work horse %d running job %s (fenced)", self.name, pid, job_id)
        return True

    def _lost_lease(self, job: Job) -> None:
        self._lease_lost_job_id = job.id
        why = (
            f"Job {job.id}: worker {self.name} was cut off for longer than its lease "
            "and another worker recovered the job"
        )
        if self.horse_pid:
            self.log.error("%s; killing work horse %s", why, self.horse_pid)
            self.kill_horse()
        else:
            self.log.critical("%s; exiting so that it does not run twice", why)
            os._exit(1)

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._executing_job = True
        try:
            super().execute_job(job, queue)
        finally:
            self._executing_job = False
            self._lease_keeper.disarm()
            self._fence.disarm()

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        # No renewal while a cold shutdown puts the job back: it would find the job claimed and exit.
        with self._lease_keeper.held():
            super().request_force_stop(signum, frame)

    # -- the work horse ----------------------------------------------------------------------------

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        if self.pid:
            die_with_parent(self.pid)
        super().main_work_horse(job, queue)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        if ret_val and os.WIFSIGNALED(ret_val):
            number = os.WTERMSIG(ret_val)
            how = f"was killed by signal {number} ({signal.Signals(number).name})"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(ret_val) if ret_val else ret_val}"
        self._horse_crash = (job.id, f"work horse {retpid} of worker {self.name} {how}")
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        if self._fence.is_fenced(job.id):
            self._horse_crash = None
            self.log.warning(
                "Job %s: run stopped by fencing; left to the worker that claims its lease", job.id
            )
            return
        if self._lease_lost_job_id == job.id:
            self._lease_lost_job_id = None
            self.log.warning(
                "Job %s: outcome of this run dropped; the recovering worker owns the job", job.id
            )
            return
        crash, self._horse_crash = self._horse_crash, None
        if crash is not None and crash[0] == job.id:
            exc = WorkerCrashed(f"Job {job.id}: {crash[1]} mid-job (out of memory?)")
            if crashes.fail_crashed_horse(self, job, queue, exc, execution=execution):
                return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    # -- recovering other workers' jobs ------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        self._recovery_stop.clear()
        threading.Thread(target=self._recovery_loop, name="rq-signals-recovery", daemon=True).start()

    def teardown(self) -> None:
        self._recovery_stop.set()
        self._lease_keeper.close()
        self._fence.close()
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def _recovery_loop(self) -> None:
        while not self._recovery_stop.is_set():
            with surviving(
                self.log, f"Worker {self.name}: recovery scan", f"next in {self.recovery_interval:g}s"
            ):
                self.recover_crashed_jobs()
            self._recovery_stop.wait(self.recovery_interval)

    def recover_crashed_jobs(self) -> int:
        """Claim and handle each job of this worker's queues whose lease expired; how many were recovered.

        Jobs dequeued by a worker that died before starting them are put back on their queue too
        (`rescue_dequeued_jobs`), not counted here.
        """
        if not self._redis_up_for_a_lease():
            return 0
        self.rescue_dequeued_jobs()
        recovered = 0
        for queue in self.queues:
            for member in leases.expired_members(self.connection, queue.name, margin=self._fence.margin):
                with surviving(
                    self.log, f"Job {member}: recovery", f"claimable again in {self.lease_ttl:g}s"
                ):
                    recovered += self._recover(queue, member)
        return recovered

    def rescue_dequeued_jobs(self) -> int:
        """Put back on its queue each job of this worker's queues that a worker moved to the queue's
        intermediate list and died before starting (see `worker.intermediate`); how many.

        A job counts as stuck once seen there, not started and without a lease, `lease_ttl +
        fence_margin` seconds (Redis clock): a live worker, even one slowed by a Redis outage shorter
        than a lease, has started it by then. Residual risk: a worker stalled between its dequeue and
        its start transaction for longer than that still starts the job when it resumes, so the job
        may run twice.
        """
        requeued = 0
        after = self.lease_ttl + self._fence.margin
        for queue in self.queues:
            try:
                done = intermediate.rescue_stuck(self.connection, queue, after=after)
            except Exception:
                self.log.exception("Queue %s: rescue of dequeued jobs failed", queue.name)
                continue
            for job_id in done.requeued:
                self.log.warning(
                    "Job %s: dequeued by a worker that died before starting it; put back on %s",
                    job_id,
                    queue.name,
                )
            for job_id in done.removed:
                self.log.info(
                    "Job %s: left in %s's intermediate list, no longer waiting to start (it started "
                    "since, or is back on the queue); removed from it",
                    job_id,
                    queue.name,
                )
            requeued += len(done.requeued)
        return requeued

    def _intermediate_key(self, queue_name: str) -> str:
        # rq's `Queue.intermediate_queue_key`, without building a Queue per job.
        return f"{self.queue_class.redis_queue_namespace_prefix}{queue_name}:intermediate"

    def _redis_up_for_a_lease(self) -> bool:
        # No lease can be renewed while Redis is down or out of reach. After a restart, a failover or
        # an outage this worker saw, let every worker renew its leases before judging any of them.
        since_trouble = self.seconds_since_redis_trouble()
        if since_trouble is not None and since_trouble < self.lease_ttl:
            return False
        try:
            uptime = int(self.connection.info("server").get("uptime_in_seconds", 0))
        except ResponseError:  # INFO disabled: cannot tell, assume up
            return True
        return uptime >= self.lease_ttl

    def _recover(self, queue: Queue, member: str) -> bool:
        token = uuid4().hex
        started_key = queue.started_job_registry.key
        if not leases.try_claim(
            self.connection,
            queue.name,
            started_key,
            member,
            token,
            self.lease_ttl,
            "expired",
            margin=self._fence.margin,
        ):
            return False
        job_id, execution_id = parse_composite_key(member)
        execution = leases.load_execution(self.connection, job_id, execution_id)
        try:
            job: Job | None = self.job_class.fetch(
                job_id, connection=self.connection, serializer=self.serializer
            )
        except NoSuchJobError:
            job = None
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            self.log.info("Job %s: lease expired after the job had ended; dropping it", job_id)
            leases.settle_claim(
                self.connection, queue, member, token, job=job, execution=execution, handle=None
            )
            return False
        dead = execution.worker_name if execution and execution.worker_name else "?"
        exc = WorkerCrashed(
            f"Job {job_id}: worker {dead} died mid-job (no heartbeat for {self.lease_ttl:g}s: "
            f"killed, out of memory or cut off from Redis); recovered by worker {self.name}"
            + (f"; {unreadable}" if (unreadable := unloadable(job)) is not None else "")
        )
        self.log.warning("%s", exc)
        started_at = execution.created_at if execution else job.started_at
        claim = crashes.Claim(member=member, token=token, execution=execution)
        return crashes.settle_crash(self, job, queue, exc, started_at=started_at, claim=claim)
