"""`Recovery`: finding the jobs whose worker died, and settling each once.

rq notices a dead worker's job only when its started-registry entry expires (a minute past the
last heartbeat, or the job timeout plus a minute for `SimpleWorker`, which does not heartbeat during
a job) and a 10-minute maintenance pass comes round. Here every running job holds a lease (see
`worker.safety.leases`) renewed every `job_monitoring_interval` seconds (at most a third of `lease_ttl`)
once the job has run that long: by rq's horse monitor in `RetryWorker`, by one long-lived thread
per worker process in `SimpleRetryWorker` (`leases.LeaseKeeper`). Every worker scans its queues
every `recovery_interval` seconds; a job whose lease expired is claimed by exactly one worker and
retried or failed under its policy, the crash recorded as a `WorkerCrashed` attempt.
Jobs without a policy get what rq's own cleanup gives them (rq's `Retry`, else the failed registry).
The same scan puts back on its queue a job that a worker dequeued (rq's LMOVE to the queue's
intermediate list) and died before starting, once seen stuck `lease_ttl + fence_margin` seconds: it
holds no lease to expire (`worker.safety.intermediate`).

Never twice at once: a horse dies with its worker (`worker.safety.orphans`); a worker whose lease has gone
unrenewed for `lease_ttl - fence_margin` seconds (cut off from Redis, or Redis down) stops its run
without waiting for Redis, by killing the horse or, when the job runs in the worker's own process,
by exiting (`worker.safety.fencing`), and claimers wait `fence_margin` seconds past a lease's expiry, so
the stopped run is dead before the recovered one starts; a worker that finds its lease claimed by
another stops its run too. After a Redis restart, or an outage the scanning worker saw itself, no
lease is judged until a whole `lease_ttl` has passed, so every live worker has renewed first.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from uuid import uuid4

from redis.exceptions import ResponseError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import parse_composite_key

from worker.exceptions import WorkerCrashed
from worker.gate import job_ids
from worker.gate.limits import unloadable
from worker.safety import crashes, intermediate, leases
from worker.threads import surviving

if TYPE_CHECKING:
    from collections.abc import Callable

    from rq.queue import Queue
    from rq.worker import BaseWorker


class Recovery:
    """A thread of `worker` that scans its queues every `recovery_interval` seconds for expired leases
    (and stuck intermediate lists), and settles what it finds."""

    def __init__(
        self,
        worker: BaseWorker,
        *,
        lease_ttl: float,
        interval: float,
        margin: float,
        seconds_since_trouble: Callable[[], float | None],
        scan: Callable[[], int],
    ) -> None:
        self.worker = worker
        self.lease_ttl = lease_ttl
        self.interval = interval
        self.margin = margin
        self._seconds_since_trouble = seconds_since_trouble
        self._scan = scan  # the worker's `recover_crashed_jobs` (a subclass may wrap it)
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        threading.Thread(target=self._loop, name="rq-signals-recovery", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with surviving(
                self.worker.log, f"Worker {self.worker.name}: recovery scan", f"next in {self.interval:g}s"
            ):
                self._scan()
            self._stop.wait(self.interval)

    def recover_crashed_jobs(self) -> int:
        """Claim and handle each job of this worker's queues whose lease expired; how many were recovered.

        Jobs dequeued by a worker that died before starting them are put back on their queue too
        (`rescue_dequeued_jobs`), not counted here.
        """
        if not self._redis_up_for_a_lease():
            return 0
        self.rescue_dequeued_jobs()
        recovered = 0
        for queue in self.worker.queues:
            for member in leases.expired_members(self.worker.connection, queue.name, margin=self.margin):
                with surviving(
                    self.worker.log, f"Job {member}: recovery", f"claimable again in {self.lease_ttl:g}s"
                ):
                    recovered += self._recover(queue, member)
        return recovered

    def rescue_dequeued_jobs(self) -> int:
        """Put back on its queue each job of this worker's queues that a worker moved to the queue's
        intermediate list and died before starting (see `worker.safety.intermediate`); how many.

        A job counts as stuck once seen there, not started and without a lease, `lease_ttl +
        fence_margin` seconds (Redis clock): a live worker, even one slowed by a Redis outage shorter
        than a lease, has started it by then. Residual risk: a worker stalled between its dequeue and
        its start transaction for longer than that still starts the job when it resumes, so the job
        may run twice.
        """
        requeued = 0
        after = self.lease_ttl + self.margin
        for queue in self.worker.queues:
            try:
                done = intermediate.rescue_stuck(self.worker.connection, queue, after=after)
            except Exception:
                self.worker.log.exception("Queue %s: rescue of dequeued jobs failed", queue.name)
                continue
            for job_id in done.requeued:
                self.worker.log.warning(
                    "Job %s: dequeued by a worker that died before starting it; put back on %s",
                    job_id,
                    queue.name,
                )
            for job_id in done.removed:
                self.worker.log.info(
                    "Job %s: left in %s's intermediate list, no longer waiting to start (it started "
                    "since, or is back on the queue); removed from it",
                    job_id,
                    queue.name,
                )
            for job_id in done.gone:
                if job_ids.is_valid_job_id(job_id):  # an invalid one is logged by the rescue itself
                    self.worker.log.info(
                        "Job %s: left in %s's intermediate list with no job hash (deleted or expired); "
                        "removed from it",
                        job_id,
                        queue.name,
                    )
            requeued += len(done.requeued)
        return requeued

    def _redis_up_for_a_lease(self) -> bool:
        # No lease can be renewed while Redis is down or out of reach. After a restart, a failover or
        # an outage this worker saw, let every worker renew its leases before judging any of them.
        since_trouble = self._seconds_since_trouble()
        if since_trouble is not None and since_trouble < self.lease_ttl:
            return False
        try:
            uptime = int(self.worker.connection.info("server").get("uptime_in_seconds", 0))
        except ResponseError:  # INFO disabled: cannot tell, assume up
            return True
        return uptime >= self.lease_ttl

    def _recover(self, queue: Queue, member: str) -> bool:
        token = uuid4().hex
        started_key = queue.started_job_registry.key
        worker = self.worker
        if not leases.try_claim(
            worker.connection,
            queue.name,
            started_key,
            member,
            token,
            self.lease_ttl,
            "expired",
            margin=self.margin,
        ):
            return False
        job_id, execution_id = parse_composite_key(member)
        execution = leases.load_execution(worker.connection, job_id, execution_id)
        try:
            job: Job | None = worker.job_class.fetch(
                job_id, connection=worker.connection, serializer=worker.serializer
            )
        except NoSuchJobError:
            job = None
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            worker.log.info("Job %s: lease expired after the job had ended; dropping it", job_id)
            leases.settle_claim(
                worker.connection, queue, member, token, job=job, execution=execution, handle=None
            )
            return False
        dead = execution.worker_name if execution and execution.worker_name else "?"
        exc = WorkerCrashed(
            f"Job {job_id}: worker {dead} died mid-job (no heartbeat for {self.lease_ttl:g}s: "
            f"killed, out of memory or cut off from Redis); recovered by worker {worker.name}"
            + (f"; {unreadable}" if (unreadable := unloadable(job)) is not None else "")
        )
        worker.log.warning("%s", exc)
        started_at = execution.created_at if execution else job.started_at
        claim = crashes.Claim(member=member, token=token, execution=execution)
        return crashes.settle_crash(worker, job, queue, exc, started_at=started_at, claim=claim)
