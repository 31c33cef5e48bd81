"""One record per attempt at a job, kept in `job.meta["attempts"]` (oldest first).

The list lives in RQ's own job hash, so the django-rq job page shows it and it
survives requeues: requeueing a failed job gives it a fresh budget, not a
fresh history.
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
        return cls(**{key: value for key, value in data.items() if key in fields})


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


def attempts_of(meta: dict[str, Any]) -> list[Attempt]:
    """The attempt records kept in a job's meta."""
    return [Attempt.from_dict(item) for item in meta.get(ATTEMPTS_META_KEY, [])]


def retries_used(meta: dict[str, Any]) -> int:
    """How many retries the job has used since it was enqueued or last requeued by hand.

    A `failed` record ends a budget: a job that runs again after one was requeued by hand, by
    `FailureRegistry.requeue` (which also sets `retry_budget_start`) or by django-rq's Requeue
    button (which does not), and gets a fresh budget either way.
    """
    records = meta.get(ATTEMPTS_META_KEY, [])
    start = int(meta.get(BUDGET_START_META_KEY, 0))
    for index in range(len(records) - 1, start - 1, -1):
        if isinstance(records[index], dict) and records[index].get("outcome") == "failed":
            start = index + 1
            break
    return max(0, len(records) - start)
