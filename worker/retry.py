"""Failure hook: ask the job's policy, then schedule a precise retry or fail the job.

The policy travels in `job.meta["retry_policy"]`; every failed attempt appends an `Attempt` to
`job.meta["attempts"]`. A retry is scheduled in rq's `ScheduledJobRegistry` (status SCHEDULED) at
a due time on the Redis clock and promoted on time by `worker.promoter`; a final failure goes
through rq's own failure path (FailedJobRegistry, failure Result, webhooks, dependents). Jobs
without a policy are left to rq, its own `Retry` included.
"""

from __future__ import annotations

import logging
import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from rq.job import Job, JobStatus
from rq.rate_limit import release_slot

from worker.attempts import (
    ATTEMPTS_META_KEY,
    Attempt,
    exc_type_name,
    iso,
    retries_used,
    traceback_tail,
    utcnow,
)
from worker.backoff import POLICY_META_KEY, Backoff, Rng
from worker.exceptions import PermanentJobError
from worker.scheduler import schedule_retry

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.queue import Queue
    from rq.worker import BaseWorker

logger = logging.getLogger(__name__)

Outcome = Literal["retrying", "failed"]


@dataclass(frozen=True)
class Plan:
    """What the policy says about one failed attempt; `delay` in seconds when retrying."""

    outcome: Outcome
    delay: float | None
    reason: str


def policy_of(job: Job) -> Backoff | None:
    """The job's retry policy from its meta; None when it has none.

    A policy that cannot be read is logged and treated as "no retries" (not as "no policy"), so
    the job still fails through our path with its attempt recorded.
    """
    raw = job.meta.get(POLICY_META_KEY)
    if raw is None:
        return None
    try:
        return Backoff.from_dict(raw)
    except (ValueError, TypeError) as exc:
        logger.warning("Job %s: unreadable %s %r (%s); no retries", job.id, POLICY_META_KEY, raw, exc)
        return Backoff(max_retries=0)


def plan_retry(policy: Backoff, exc: BaseException, meta: dict[str, Any], rng: Rng = random.uniform) -> Plan:
    """Retry or fail, and after how long: `PermanentJobError` never retries, then the policy decides."""
    used = retries_used(meta)
    if isinstance(exc, PermanentJobError):
        return Plan("failed", None, "permanent error")
    if not policy.is_retryable(exc):
        return Plan("failed", None, "not retried by its policy")
    if not policy.has_budget(used):
        return Plan("failed", None, f"no retries left ({used}/{policy.max_retries} used)")
    return Plan("retrying", policy.delay(used + 1, rng), f"retry {used + 1}/{policy.max_retries}")


def record_attempt(
    job: Job,
    *,
    worker_name: str,
    exc: BaseException | None,
    started_at: datetime | None,
    ended_at: datetime,
    plan: Plan | None,
) -> Attempt:
    """Append this attempt to `job.meta["attempts"]` (in memory; the caller saves it) and return it.

    `plan` None records a success. `retry_at` is the worker's estimate; the authoritative due time
    is the job's score in rq's scheduled registry, taken from the Redis clock a moment later.
    """
    history = job.meta.setdefault(ATTEMPTS_META_KEY, [])
    delay = plan.delay if plan is not None else None
    attempt = Attempt(
        attempt=len(history) + 1,
        started_at=iso(started_at),
        ended_at=iso(ended_at) or "",
        worker=worker_name,
        outcome="succeeded" if plan is None else plan.outcome,
        exc_type=exc_type_name(exc) if exc is not None else None,
        message=str(exc) if exc is not None else None,
        traceback=traceback_tail(exc) if exc is not None else None,
        delay=delay,
        retry_at=iso(utcnow() + timedelta(seconds=delay)) if delay is not None else None,
    )
    history.append(attempt.to_dict())
    return attempt


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
    policy = policy_of(job)
    if policy is None:
        return None
    plan = plan_retry(policy, exc, job.meta)
    record_attempt(
        job, worker_name=worker.name, exc=exc, started_at=started_at, ended_at=ended_at or utcnow(), plan=plan
    )
    pipe = pipeline if pipeline is not None else worker.connection.pipeline()
    if plan.outcome == "retrying":
        assert plan.delay is not None
        schedule_retry(job, queue, plan.delay, pipe)
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


def format_exception(exc: BaseException) -> str:
    """The text rq stores as a failed job's `exc_info`."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def log_outcome(job: Job, plan: Plan, exc: BaseException, policy: Backoff) -> None:
    name = type(exc).__name__
    if plan.outcome == "retrying":
        logger.info("Job %s: %s in %.3fs (%s)", job.id, plan.reason, plan.delay, name)
    else:
        attempts = len(job.meta.get(ATTEMPTS_META_KEY, []))
        logger.warning("Job %s: failed after %d attempt(s) (%s): %s", job.id, attempts, name, plan.reason)


class RetryMixin:
    """Placeholder until the failure hook lands: rq's own failure handling."""
