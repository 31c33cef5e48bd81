"""The ``retrying`` and ``exhausted`` moments of a failed attempt (`worker.events`), once it is saved.

Every failure path calls `announce_failure` after its outcome reached Redis: the retry handler in
the process that ran the job, `after_commit` for a horse that died and for crash recovery, and rq's
own handling of a job without our policy. What the hooks are told comes from the attempt record just
appended to ``job.meta["attempts"]`` (no Redis command).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from worker import events
from worker.retries.attempts import Attempt, attempt_count, records_of

if TYPE_CHECKING:
    from rq.job import Job


def announce_failure(
    job: Job, outcome: Literal["retrying", "failed"], exc: BaseException | None, *, recorded: bool
) -> None:
    """Emit ``retrying`` or ``exhausted`` for `job`'s failed attempt.

    `recorded`: the attempt is the last record of the job's history (our policy's paths); else (rq's
    own ``Retry``, a job without a policy) it is the one after the records, and the delay is unknown.
    """
    moment: events.Moment = "retrying" if outcome == "retrying" else "exhausted"
    if not events.has_hooks(moment):
        return
    record = _last_record(job) if recorded else None
    attempt = record.attempt if record is not None else attempt_count(job.meta) + 1
    if moment == "exhausted":
        events.emit(moment, job, attempt=attempt, exception=exc)
        return
    delay = record.delay if record is not None else None
    retry_at = _parse(record.retry_at) if record is not None else None
    events.emit(moment, job, attempt=attempt, exception=exc, delay=delay, retry_at=retry_at)


def _last_record(job: Job) -> Attempt | None:
    records = records_of(job.meta)
    if not records or not isinstance(records[-1], dict):
        return None
    try:
        return Attempt.from_dict(records[-1])
    except TypeError:  # a record this version did not write
        return None


def _parse(moment: str | None) -> datetime | None:
    if moment is None:
        return None
    try:
        return datetime.fromisoformat(moment)
    except ValueError:
        return None
