"""What becomes of a crashed job: its policy decides, else it gets what rq's own cleanup would give it.

Used by `Recovery` for jobs whose worker died (claimed through `worker.safety.leases`) and for jobs
whose work horse died under a live worker. Either way the crash is one `WorkerCrashed` attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rq.callbacks import execute_failure_callback
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.rate_limit import release_slot
from rq.utils import now

from worker import events
from worker.exceptions import WorkerCrashed
from worker.retries.announce import announce_failure
from worker.retries.attempts import attempt_count
from worker.retries.handler import after_commit, policy_of, retry_or_fail
from worker.safety import leases

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.worker import BaseWorker

    from worker.metrics import JobMetrics

Outcome = Literal["retrying", "failed"]


@dataclass(frozen=True)
class Claim:
    """This worker's claim on a dead worker's execution `member` (`<job_id>:<execution_id>`)."""

    member: str
    token: str
    execution: Execution | None


def settle_crash(
    worker: BaseWorker,
    job: Job,
    queue: Queue,
    exc: WorkerCrashed,
    *,
    started_at: datetime | None,
    claim: Claim,
) -> bool:
    """Retry or fail a job whose worker died, in one transaction with the end of `claim`; whether it did."""
    has_policy = policy_of(job) is not None
    if not has_policy:
        run_failure_callback(worker, job)

    def handle(pipeline: Pipeline[Any]) -> Outcome:
        if has_policy:
            outcome = retry_or_fail(worker, job, queue, exc=exc, started_at=started_at, pipeline=pipeline)
            assert outcome is not None
        else:
            outcome = abandon_as_rq_does(job, queue, exc, pipeline)
        count_crash(worker, pipeline, job, outcome)
        return outcome

    settled, outcome = leases.settle_claim(
        worker.connection, queue, claim.member, claim.token, job=job, execution=claim.execution, handle=handle
    )
    if not settled or outcome is None:
        return False
    dead = claim.execution.worker_name if claim.execution and claim.execution.worker_name else "?"
    events.emit(
        "recovered", job, attempt=attempt_count(job.meta), exception=exc, outcome=outcome, dead_worker=dead
    )
    if has_policy:
        after_commit(job, queue, outcome, exc)
    else:
        after_rq_abandon(job, queue, outcome, exc)
    return True


def fail_crashed_horse(
    worker: BaseWorker, job: Job, queue: Queue, exc: WorkerCrashed, *, execution: Execution | None
) -> bool:
    """Retry or fail, under its policy, a job whose work horse died; False if it has none (rq handles it)."""
    with worker.connection.pipeline() as pipeline:
        outcome = retry_or_fail(
            worker, job, queue, exc=exc, started_at=job.started_at, ended_at=job.ended_at, pipeline=pipeline
        )
        if outcome is None:
            return False
        worker.cleanup_execution(job, pipeline=pipeline, execution=execution)
        worker.increment_failed_job_count(pipeline)
        count_crash(worker, pipeline, job, outcome)
        pipeline.execute()
    after_commit(job, queue, outcome, exc)
    return True


def count_crash(worker: BaseWorker, pipeline: Pipeline[Any], job: Job, outcome: Outcome) -> None:
    """A crashed attempt, in `worker`'s metrics (if it counts any), on the pipeline that settles it."""
    metrics: JobMetrics | None = getattr(worker, "metrics", None)  # the core's; None on rq's own classes
    if metrics is not None:
        metrics.queue_outcome(
            pipeline, job, "retrying" if outcome == "retrying" else "exhausted", crashed=True
        )


def run_failure_callback(worker: BaseWorker, job: Job) -> None:
    """As rq's cleanup does: call the failure callback of a crashed job with `AbandonedJobError`."""
    try:
        execute_failure_callback(
            job, worker.death_penalty_class, AbandonedJobError, AbandonedJobError(), None
        )
    except Exception:
        worker.log.exception("Job %s: failure callback raised during crash recovery", job.id)


def abandon_as_rq_does(job: Job, queue: Queue, exc: WorkerCrashed, pipeline: Pipeline[Any]) -> Outcome:
    """What `StartedJobRegistry.cleanup` does with an abandoned job: rq's `Retry` if any, else failed."""
    if job.retries_left and job.retries_left > 0:
        job.retry(queue, pipeline)
        return "retrying"
    record_job_failure(
        job, f"Moved to FailedJobRegistry, due to AbandonedJobError ({exc}), at {now()}", pipeline
    )
    return "failed"


def after_rq_abandon(job: Job, queue: Queue, outcome: Outcome, exc: WorkerCrashed) -> None:
    """What rq's cleanup does once an abandoned job is settled; and its `retrying` or `exhausted` moment."""
    announce_failure(job, outcome, exc, recorded=False)
    try:
        if outcome == "failed":
            job.send_webhooks(JobStatus.FAILED, exc_string=str(exc))
            queue.enqueue_dependents(job)
    finally:
        release_slot(job)
