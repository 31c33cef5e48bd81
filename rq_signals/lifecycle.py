"""Django signals about receiver calls, sent in the worker process by `jobs.run_receiver`.

Connect to them (plain Django receivers, in a ``receivers`` module or ``AppConfig.ready()``) for
metrics or alerts. The sender is the receiver function; every signal has ``receiver_id`` (dotted
path), ``job_id`` (None when not run by a worker, e.g. under ``EAGER``) and ``attempt`` (1 for the
first run; requeued jobs keep counting). They are sent robustly: an error in a listener is logged
with the job id and never changes the job's outcome.

- ``receiver_succeeded``: the receiver returned.
- ``receiver_skipped``: the receiver was not called; ``reason`` says why (a row it needed is gone).
- ``receiver_failed``: the receiver raised ``exception``; ``will_retry`` says whether the job's
  ``Backoff`` retries it (as the retry worker will decide: same policy, same attempt count).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal
from rq.job import Job

from worker.retries.attempts import attempt_count
from worker.retries.policy import plan_retry, policy_of

logger = logging.getLogger(__name__)

receiver_succeeded = Signal()
receiver_skipped = Signal()
receiver_failed = Signal()


def attempt_number(job: Job | None) -> int:
    """This run's attempt number: one more than the attempts the worker has recorded so far."""
    if job is None:
        return 1
    return attempt_count(job.meta) + 1


def will_retry(job: Job | None, exc: BaseException) -> bool:
    """Whether the retry worker will retry `job` after `exc` (no job or no policy: it will not)."""
    if job is None:
        return False
    policy = policy_of(job)
    if policy is None:
        return False
    return plan_retry(policy, exc, job.meta, rng=_no_jitter).outcome == "retrying"


def send(signal: Signal, func: Any, receiver_id: str, job: Job | None, **details: Any) -> None:
    """Send a lifecycle signal robustly; a listener's error is logged, never raised."""
    job_id = job.id if job is not None else None
    responses = signal.send_robust(
        sender=func, receiver_id=receiver_id, job_id=job_id, attempt=attempt_number(job), **details
    )
    for listener, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "Job %s: lifecycle listener %r of receiver %s raised %s: %s",
                job_id,
                listener,
                receiver_id,
                type(response).__name__,
                response,
            )


def _no_jitter(low: float, high: float) -> float:
    return low
