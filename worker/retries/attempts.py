"""One record per attempt at a job, kept in `job.meta["attempts"]` (oldest first).

The list lives in RQ's own job hash, so the django-rq job page shows it and it
survives requeues: requeueing a failed job gives it a fresh budget, not a
fresh history. The list is capped: the first `KEEP_FIRST_ATTEMPTS` and the last
`KEEP_LAST_ATTEMPTS` records are kept, and `job.meta["attempts_dropped"]` counts
those dropped in between, so a job retried many times does not grow its hash.
Attempt numbers and retry budgets count the dropped records too.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal

#: `job.meta` key holding the list of attempt records (dicts, oldest first).
ATTEMPTS_META_KEY = "attempts"
#: `job.meta` key: how many attempts count against the policy's budget (reset by a requeue).
BUDGET_START_META_KEY = "retry_budget_start"

#: `job.meta` key: how many attempt records were dropped from the middle of the list.
DROPPED_META_KEY = "attempts_dropped"
#: The history keeps the first attempt (what went wrong at first) and the last 20 (what goes wrong now).
KEEP_FIRST_ATTEMPTS = 1
KEEP_LAST_ATTEMPTS = 20

Outcome = Literal["succeeded", "retrying", "failed", "crashed", "interrupted"]
TRACEBACK_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Attempt:
    """What happened on one attempt. Times are ISO-8601 UTC; `delay` is seconds until the retry."""

    attempt: int
    started_at: str | None
    ended_at: str
    worker: str
    outcome: Outcome
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    delay: float | None = None
    retry_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        fields = cls.__dataclass_fields__
        # `to_dict` leaves out None values, `started_at` (no default) included.
        return cls(**{"started_at": None, **{key: value for key, value in data.items() if key in fields}})


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC, or None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def exc_type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def traceback_tail(exc: BaseException, limit: int = TRACEBACK_TAIL_CHARS) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-limit:]


def records_of(meta: dict[str, Any]) -> list[Any]:
    """The raw attempt records in a job's meta; [] when it holds something else."""
    records = meta.get(ATTEMPTS_META_KEY, [])
    return records if isinstance(records, list) else []


def dropped_attempts(meta: dict[str, Any]) -> int:
    """How many attempt records were dropped from the middle of the history (0 if unreadable)."""
    return _count(meta.get(DROPPED_META_KEY, 0))


def attempt_count(meta: dict[str, Any]) -> int:
    """How many attempts the job has had: the records kept plus those dropped."""
    return len(records_of(meta)) + dropped_attempts(meta)


def append_attempt(meta: dict[str, Any], attempt: Attempt) -> None:
    """Add `attempt` to the history in `meta` (in memory), dropping middle records past the cap.

    A dropped `failed` record ended a budget: its attempt number moves to `retry_budget_start`,
    so `retries_used` counts the same without it.
    """
    history = records_of(meta)
    history.append(attempt.to_dict())
    meta[ATTEMPTS_META_KEY] = history
    excess = len(history) - KEEP_FIRST_ATTEMPTS - KEEP_LAST_ATTEMPTS
    if excess <= 0:
        return
    dropped = dropped_attempts(meta)
    doomed = history[KEEP_FIRST_ATTEMPTS : KEEP_FIRST_ATTEMPTS + excess]
    for offset, record in enumerate(doomed):
        if isinstance(record, dict) and record.get("outcome") == "failed":
            number = dropped + KEEP_FIRST_ATTEMPTS + offset + 1
            meta[BUDGET_START_META_KEY] = max(_count(meta.get(BUDGET_START_META_KEY, 0)), number)
    del history[KEEP_FIRST_ATTEMPTS : KEEP_FIRST_ATTEMPTS + excess]
    meta[DROPPED_META_KEY] = dropped + excess


def retries_used(meta: dict[str, Any]) -> int:
    """How many retries the job has used since it was enqueued or last requeued by hand.

    A `failed` record ends a budget: a job that runs again after one was requeued by hand, by
    `FailureRegistry.requeue` (which also sets `retry_budget_start`) or by django-rq's Requeue
    button (which does not), and gets a fresh budget either way. Counts are attempt numbers, so
    records dropped from the history (see `append_attempt`) still count.
    """
    records = records_of(meta)
    dropped = dropped_attempts(meta)
    start = _count(meta.get(BUDGET_START_META_KEY, 0))
    for index in range(len(records) - 1, -1, -1):
        number = index + 1 + (dropped if index >= KEEP_FIRST_ATTEMPTS else 0)
        if number <= start:
            break
        if isinstance(records[index], dict) and records[index].get("outcome") == "failed":
            start = number
            break
    return max(0, len(records) + dropped - start)


def _count(value: object) -> int:
    """A count read from meta (data from Redis): a whole number >= 0, else 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value
