"""What a job's policy says about one failed attempt, and the record each attempt leaves.

Pure decisions plus in-memory bookkeeping on `job.meta`: no Redis here. `worker.retry` persists.
"""

from __future__ import annotations

import logging
import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from rq.job import Job

from worker.attempts import (
    ATTEMPTS_META_KEY,
    Attempt,
    exc_type_name,
    iso,
    retries_used,
    traceback_tail,
)
from worker.backoff import POLICY_META_KEY, Backoff, Rng
from worker.exceptions import PermanentJobError

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger: `rq worker` prints it

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

    `plan` None records a success. A retry is due `delay` seconds after `ended_at`: `retry_at` says
    when by the worker's clock; the authoritative due time is the job's score in rq's scheduled
    registry, the same moment on the Redis clock (see `worker.scheduler.schedule_retry`).
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
        retry_at=iso(ended_at + timedelta(seconds=delay)) if delay is not None else None,
    )
    history.append(attempt.to_dict())
    return attempt


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
