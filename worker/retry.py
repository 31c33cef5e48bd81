"""Failure hook: ask the job's policy, then schedule a precise retry or fail the job.

The policy travels in `job.meta["retry_policy"]`; every failed attempt appends an `Attempt` to
`job.meta["attempts"]`. A retry is scheduled in rq's `ScheduledJobRegistry` (status SCHEDULED) at
a due time on the Redis clock and promoted on time by `worker.promoter`; a final failure goes
through rq's own failure path (FailedJobRegistry, failure Result, webhooks, dependents). Jobs
without a policy are left to rq, its own `Retry` included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus
from rq.rate_limit import release_slot

from worker.attempts import ATTEMPTS_META_KEY, utcnow
from worker.exceptions import WorkerCrashed
from worker.loading import UnreadableJobMixin, load_error
from worker.policy import (
    Outcome,
    blame_policy,
    format_exception,
    log_outcome,
    plan_retry,
    policy_of,
    read_policy,
    record_attempt,
)
from worker.promoter import PromotionMixin
from worker.scheduler import schedule_retry

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.registry import StartedJobRegistry
    from rq.worker import BaseWorker

__all__ = ["Outcome", "RetryMixin", "after_commit", "plan_retry", "policy_of", "retry_or_fail"]

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
        job._handle_failure(format_exception(exc), pipe, worker_name=worker.name)
        pipe.hset(job.key, "meta", job.serializer.dumps(job.meta))
    log_outcome(job, plan, exc, policy)
    if pipeline is None:
        pipe.execute()
        after_commit(job, queue, plan.outcome, exc)
    return plan.outcome


def after_commit(job: Job, queue: Queue, outcome: Outcome, exc: BaseException) -> None:
    """What rq does once a failure is persisted: webhooks and dependents (failed), the rate-limit slot."""
    try:
        if outcome == "failed":
            job.send_webhooks(JobStatus.FAILED, exc_string=format_exception(exc))
            queue.enqueue_dependents(job)
    finally:
        release_slot(job)


class RetryMixin(PromotionMixin, UnreadableJobMixin):
    """rq's failure hook, policy first: schedule the retry or fail the job, recording every attempt.

    The exception comes from `handle_exception`, which rq calls just before `handle_job_failure`
    (both in the work horse for the forking worker); when the horse died, there is none and the
    attempt is recorded as `WorkerCrashed`. Our meta writes ride in rq's own pipelines (through
    `cleanup_execution`, which rq calls inside them), so recording costs no extra round trip.
    """

    _retry_exc: tuple[str, BaseException] | None = None
    _meta_writes: dict[str, bytes] | None = None

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        self._retry_exc = (job.id, exc) if isinstance(exc, BaseException) else None
        super().handle_exception(job, *exc_info)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        exc = self._take_exception(job)
        problem = load_error(job, exc)
        if problem is not None:
            if problem is not exc:
                problem.__cause__ = exc
            exc, exc_string = problem, format_exception(problem)
            job.retries_left = None  # nothing can mend it, not even rq's own Retry
        policy, bad_policy = read_policy(job)
        if policy is None or self._stopped_job_id == job.id:
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
            return
        if exc is None:
            exc = WorkerCrashed(f"Job {job.id}: {exc_string.strip() or 'its work horse died'}")
        if bad_policy is not None and problem is None:  # a job that cannot load says so first
            exc = blame_policy(bad_policy, exc)
            exc_string = format_exception(exc)
        plan = plan_retry(policy, exc, job.meta)
        ended_at = job.ended_at or utcnow()
        record_attempt(
            job, worker_name=self.name, exc=exc, started_at=job.started_at, ended_at=ended_at, plan=plan
        )
        log_outcome(job, plan, exc, policy)
        if plan.outcome == "retrying":
            assert plan.delay is not None
            self._schedule_retry(job, queue, plan.delay, execution, failed_at=ended_at)
            return
        job.retries_left = None  # the policy has decided; rq's Retry must not retry behind its back
        with self._writing_meta(job):
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        if not job.meta.get(ATTEMPTS_META_KEY) or job.get_result_ttl(self.default_result_ttl) == 0:
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        ended_at = job.ended_at or utcnow()
        record = record_attempt(
            job, worker_name=self.name, exc=None, started_at=job.started_at, ended_at=ended_at, plan=None
        )
        logger.info("Job %s: succeeded on attempt %d", job.id, record.attempt)
        with self._writing_meta(job):
            super().handle_job_success(job, queue, started_job_registry, execution)

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        super().cleanup_execution(job, pipeline, execution)
        meta = (self._meta_writes or {}).get(job.id)
        if meta is not None:
            pipeline.hset(job.key, "meta", meta)

    @contextmanager
    def _writing_meta(self, job: Job) -> Iterator[None]:
        """While rq handles `job`, its pipeline also saves `job.meta` (see `cleanup_execution`)."""
        if self._meta_writes is None:
            self._meta_writes = {}
        self._meta_writes[job.id] = job.serializer.dumps(job.meta)
        try:
            yield
        finally:
            self._meta_writes.pop(job.id, None)

    def _take_exception(self, job: Job) -> BaseException | None:
        stash, self._retry_exc = self._retry_exc, None
        return stash[1] if stash is not None and stash[0] == job.id else None

    def _schedule_retry(
        self, job: Job, queue: Queue, delay: float, execution: Execution | None, *, failed_at: datetime
    ) -> None:
        """rq's retry branch of `handle_job_failure`, but due on the Redis clock instead of `job.retry()`."""
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipe, execution)
            self.increment_failed_job_count(pipe)
            if job.started_at and job.ended_at:
                self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            schedule_retry(job, queue, delay, pipe, failed_at=failed_at)
            try:
                pipe.execute()
            except Exception:
                # Left in the started registry: crash recovery finds it, as for a worker that died here.
                logger.exception("Job %s: could not persist its retry", job.id)
                return
        self._release_slot_safely(job)
