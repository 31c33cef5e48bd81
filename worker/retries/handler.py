"""Failure hook: ask the job's policy, then schedule a precise retry or fail the job.

The policy travels in `job.meta["retry_policy"]`; every failed attempt appends an `Attempt` to
`job.meta["attempts"]`. A retry is scheduled in rq's `ScheduledJobRegistry` (status SCHEDULED) at
a due time on the Redis clock and promoted on time by `worker.retries.promoter`; a final failure goes
through rq's own failure path (FailedJobRegistry, failure Result, webhooks, dependents). Jobs
without a policy are left to rq, its own `Retry` included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus
from rq.rate_limit import release_slot

from worker.exceptions import WorkerCrashed
from worker.gate.loading import load_error
from worker.metrics import Outcome as MetricsOutcome
from worker.retries.announce import announce_failure
from worker.retries.attempts import ATTEMPTS_META_KEY, utcnow
from worker.retries.policy import (
    Outcome,
    blame_policy,
    format_exception,
    log_outcome,
    plan_retry,
    policy_of,
    read_policy,
    record_attempt,
)
from worker.retries.scheduler import schedule_retry
from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.worker import BaseWorker

    from worker.run import Run

__all__ = ["Outcome", "RetryHandler", "after_commit", "plan_retry", "policy_of", "retry_or_fail"]

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger: `rq worker` prints it


def retry_or_fail(
    worker: BaseWorker,
    job: Job,
    queue: Queue,
    *,
    exc: BaseException,
    started_at: datetime | None,
    ended_at: datetime | None = None,
    pipeline: Pipeline[Any] | None = None,
) -> Outcome | None:
    """Record a failed attempt of `job` and retry or fail it under the job's own policy.

    Returns None, doing nothing at all, when the job carries no policy: the caller falls back to
    rq's handling. Otherwise appends an `Attempt` to `job.meta["attempts"]` and either schedules the
    retry (status SCHEDULED, rq's scheduled registry, due `policy.delay(n)` seconds from now on the
    Redis clock; returns "retrying") or fails the job as rq does (status FAILED, FailedJobRegistry,
    failure Result; returns "failed"). `PermanentJobError` is never retried.

    It does not touch the started registry or the job's Execution: that is the caller's (rq's
    worker, or crash recovery) to clean up, ideally in the same `pipeline`.

    Without `pipeline`: one round trip, then the post-commit steps (rate-limit slot; for "failed"
    also webhooks and dependents). With `pipeline`: the commands are only queued on it; execute it,
    then call `after_commit(job, queue, outcome, exc)` yourself.
    """
    policy, problem = read_policy(job)
    if policy is None:
        return None
    exc = blame_policy(problem, exc)
    plan = plan_retry(policy, exc, job.meta)
    ended_at = ended_at or utcnow()
    record_attempt(job, worker_name=worker.name, exc=exc, started_at=started_at, ended_at=ended_at, plan=plan)
    pipe = pipeline if pipeline is not None else worker.connection.pipeline()
    if plan.outcome == "retrying":
        assert plan.delay is not None
        schedule_retry(job, queue, plan.delay, pipe, failed_at=ended_at)
    else:
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        rq_private.queue_failure(job, format_exception(exc), pipe, worker_name=worker.name)
        rq_layout.queue_meta(pipe, job, job.serializer.dumps(job.meta))
    log_outcome(job, plan, exc, policy)
    if pipeline is None:
        pipe.execute()
        after_commit(job, queue, plan.outcome, exc)
    return plan.outcome


def after_commit(job: Job, queue: Queue, outcome: Outcome, exc: BaseException) -> None:
    """What rq does once a failure is persisted: webhooks and dependents (failed), the rate-limit slot;
    and the `retrying` or `exhausted` moment (`worker.events`)."""
    announce_failure(job, outcome, exc, recorded=True)
    try:
        if outcome == "failed":
            job.send_webhooks(JobStatus.FAILED, exc_string=format_exception(exc))
            queue.enqueue_dependents(job)
    finally:
        release_slot(job)


def _rq_outcome(job: Job, *, stopped: bool) -> MetricsOutcome:
    """What rq's `handle_job_failure` is about to make of a failed attempt (for `worker.metrics`)."""
    if stopped:
        return "stopped"
    return "retrying" if job.should_retry else "exhausted"


class RetryHandler:
    """rq's failure hook, policy first: schedule the retry or fail the job, recording every attempt.

    The exception comes from `handle_exception`, which rq calls just before `handle_job_failure`
    (both in the work horse for the forking worker), kept in the job's `Run`; when the horse died,
    there is none and the attempt is recorded as `WorkerCrashed`. The attempts history rides in rq's
    own pipelines (`add_to_outcome`, which the core calls from `cleanup_execution`, inside them), so
    recording costs no extra round trip.
    """

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker

    def job_failed(
        self,
        job: Job,
        queue: Queue,
        run: Run,
        exc_string: str,
        execution: Execution | None,
        rq: Callable[[str], None],
    ) -> None:
        """Handle a failed attempt of `job`; `rq(exc_string)` is rq's own failure handling."""
        exc, run.exception = run.exception, None
        problem = load_error(job, exc)
        if problem is not None:
            if problem is not exc:
                problem.__cause__ = exc
            exc, exc_string = problem, format_exception(problem)
            job.retries_left = None  # nothing can mend it, not even rq's own Retry
        policy, bad_policy = read_policy(job)
        if policy is None or rq_private.stopped_job_id(self.worker) == job.id:
            run.outcome = _rq_outcome(job, stopped=rq_private.stopped_job_id(self.worker) == job.id)
            rq(exc_string)
            self._announce_rq_outcome(job, exc)
            return
        if exc is None:
            exc = WorkerCrashed(f"Job {job.id}: {exc_string.strip() or 'its work horse died'}")
        if bad_policy is not None and problem is None:  # a job that cannot load says so first
            exc = blame_policy(bad_policy, exc)
            exc_string = format_exception(exc)
        plan = plan_retry(policy, exc, job.meta)
        ended_at = job.ended_at or utcnow()
        record_attempt(
            job,
            worker_name=self.worker.name,
            exc=exc,
            started_at=job.started_at,
            ended_at=ended_at,
            plan=plan,
        )
        log_outcome(job, plan, exc, policy)
        run.outcome = "retrying" if plan.outcome == "retrying" else "exhausted"
        if plan.outcome == "retrying":
            assert plan.delay is not None
            if self._schedule_retry(job, queue, plan.delay, execution, failed_at=ended_at):
                announce_failure(job, "retrying", exc, recorded=True)
            return
        job.retries_left = None  # the policy has decided; rq's Retry must not retry behind its back
        with self._saving_meta(job, run):
            rq(exc_string)
        announce_failure(job, "failed", exc, recorded=True)

    def job_succeeded(self, job: Job, run: Run, rq: Callable[[], None]) -> None:
        """Record the successful attempt of a job that failed before; `rq()` saves the success."""
        if not job.meta.get(ATTEMPTS_META_KEY) or job.get_result_ttl(self.worker.default_result_ttl) == 0:
            rq()
            return
        ended_at = job.ended_at or utcnow()
        record = record_attempt(
            job,
            worker_name=self.worker.name,
            exc=None,
            started_at=job.started_at,
            ended_at=ended_at,
            plan=None,
        )
        logger.info("Job %s: succeeded on attempt %d", job.id, record.attempt)
        with self._saving_meta(job, run):
            rq()

    def add_to_outcome(self, job: Job, pipeline: Pipeline[Any], run: Run | None) -> None:
        """The attempts history, in the pipeline that saves `job`'s outcome."""
        if run is not None and run.meta_to_save is not None:
            rq_layout.queue_meta(pipeline, job, run.meta_to_save)

    @contextmanager
    def _saving_meta(self, job: Job, run: Run) -> Iterator[None]:
        """While rq handles `job`, its pipeline also saves `job.meta` (see `add_to_outcome`)."""
        run.meta_to_save = job.serializer.dumps(job.meta)
        try:
            yield
        finally:
            run.meta_to_save = None

    @staticmethod
    def _announce_rq_outcome(job: Job, exc: BaseException | None) -> None:
        """`retrying` or `exhausted` for a failure rq handled (no policy of ours): by the status it left."""
        status = job.get_status(refresh=False)
        if status == JobStatus.FAILED:
            announce_failure(job, "failed", exc, recorded=False)
        elif status in (JobStatus.SCHEDULED, JobStatus.QUEUED):  # rq's own Retry
            announce_failure(job, "retrying", exc, recorded=False)

    def _schedule_retry(
        self, job: Job, queue: Queue, delay: float, execution: Execution | None, *, failed_at: datetime
    ) -> bool:
        """rq's retry branch of `handle_job_failure`, but due on the Redis clock instead of `job.retry()`;
        whether the retry was saved."""
        worker = self.worker
        with worker.connection.pipeline() as pipe:
            worker.cleanup_execution(job, pipe, execution)
            worker.increment_failed_job_count(pipe)
            if job.started_at and job.ended_at:
                worker.increment_total_working_time(job.ended_at - job.started_at, pipe)
            schedule_retry(job, queue, delay, pipe, failed_at=failed_at)
            try:
                pipe.execute()
            except Exception:
                # Left in the started registry: crash recovery finds it, as for a worker that died here.
                logger.exception("Job %s: could not persist its retry", job.id)
                return False
        rq_private.release_slot_safely(worker, job)
        return True
