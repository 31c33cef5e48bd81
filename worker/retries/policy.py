"""What a job's policy says about one failed attempt, and the record each attempt leaves.

Pure decisions plus in-memory bookkeeping on `job.meta`: no Redis here. `worker.retries.handler` persists.
"""

from __future__ import annotations

import logging
import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from rq.job import Job

from worker.exceptions import PermanentJobError, RetryPolicyError
from worker.retries.attempts import (
    Attempt,
    append_attempt,
    attempt_count,
    exc_type_name,
    iso,
    retries_used,
    traceback_tail,
)
from worker.retries.backoff import POLICY_META_KEY, Backoff, Rng, clamp_delay

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
    the job still fails through our path with its attempt recorded (see `read_policy`).
    """
    return read_policy(job)[0]


def read_policy(job: Job) -> tuple[Backoff | None, RetryPolicyError | None]:
    """The job's retry policy and, when its meta holds an invalid one, the error that fails the job.

    An invalid policy (wrong shape, a field out of bounds: see `Backoff`) reads as `Backoff(max_retries=0)`
    with a `RetryPolicyError` naming the job and the field: the failure paths raise that instead of
    the job's own error (chained to it), so the failed job says why it was not retried.
    """
    raw = job.meta.get(POLICY_META_KEY)
    if raw is None:
        return None, None
    try:
        return Backoff.from_dict(raw), None
    except Exception as exc:  # data from Redis: whatever it is, it means "no retries"
        problem = RetryPolicyError(job.id, f"{exc} (in {_truncated(raw)})")
        logger.warning("%s", problem)
        return Backoff(max_retries=0), problem


def blame_policy(problem: RetryPolicyError | None, exc: BaseException) -> BaseException:
    """`exc`, or `problem` (a job's invalid policy, see `read_policy`) chained to it."""
    if problem is None:
        return exc
    problem.__cause__ = exc
    return problem


def plan_retry(policy: Backoff, exc: BaseException, meta: dict[str, Any], rng: Rng = random.uniform) -> Plan:
    """Retry or fail, and after how long: `PermanentJobError` never retries, then the policy decides.

    An error while the policy decides (it holds data from Redis) means "no retries": the plan says
    why, and `log_outcome` logs it with the job id.
    """
    if isinstance(exc, PermanentJobError):
        return Plan("failed", None, "permanent error")
    try:
        used = retries_used(meta)
        if not policy.is_retryable(exc):
            return Plan("failed", None, "not retried by its policy")
        if not policy.has_budget(used):
            return Plan("failed", None, f"no retries left ({used}/{policy.max_retries} used)")
        return Plan(
            "retrying", clamp_delay(policy.delay(used + 1, rng)), f"retry {used + 1}/{policy.max_retries}"
        )
    except Exception as error:
        return Plan(
            "failed", None, f"no retries: its retry policy could not be evaluated ({_truncated(error)})"
        )


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
    registry, the same moment on the Redis clock (see `worker.retries.scheduler.schedule_retry`).
    """
    delay = plan.delay if plan is not None else None
    attempt = Attempt(
        attempt=attempt_count(job.meta) + 1,
        started_at=iso(started_at),
        ended_at=iso(ended_at) or "",
        worker=worker_name,
        outcome="succeeded" if plan is None else plan.outcome,
        exc_type=exc_type_name(exc) if exc is not None else None,
        message=str(exc) if exc is not None else None,
        traceback=traceback_tail(exc) if exc is not None else None,
        delay=delay,
        retry_at=_retry_at(ended_at, delay),
    )
    append_attempt(job.meta, attempt)
    return attempt


def _retry_at(ended_at: datetime, delay: float | None) -> str | None:
    if delay is None:
        return None
    try:
        return iso(ended_at + timedelta(seconds=delay))
    except (OverflowError, ValueError):  # delays are bounded by `Backoff`; a clock at the end of time is not
        return None


def _truncated(value: object, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, BaseException) else f"{type(value).__name__}: {value}"
    return text if len(text) <= limit else text[:limit] + "..."


def format_exception(exc: BaseException) -> str:
    """The text rq stores as a failed job's `exc_info`."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def log_outcome(job: Job, plan: Plan, exc: BaseException, policy: Backoff) -> None:
    name = type(exc).__name__
    if plan.outcome == "retrying":
        logger.info("Job %s: %s in %.3fs (%s)", job.id, plan.reason, plan.delay, name)
    else:
        attempts = attempt_count(job.meta)
        logger.warning("Job %s: failed after %d attempt(s) (%s): %s", job.id, attempts, name, plan.reason)
