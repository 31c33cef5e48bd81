"""Each receiver's calls as Redis holds them, counted for `rq_signals.receivers_overview`.

Counts come from each ``RQ_QUEUES`` queue and its scheduled (retrying), started (running), failed
and finished registries: every job there is read (at most `SCAN_LIMIT` per list, newest first, in
chunks of one pipeline) and counted against its receiver. Failed and finished calls are also counted
in `WINDOWS` (the last hour and day) by the ``ended_at`` their job hash holds, read with the job in
the same pipeline, else by their last attempt record's; a job with neither counts in the totals
only. A finished call stays in Redis for its result TTL (rq's default: 500 s), so its day count is
what Redis still holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from rq_signals import queues, registration
from rq_signals.conf import conf
from rq_signals.dashboard_limits import DashboardJob
from rq_signals.dashboard_reading import ErrorLine, ReceiverJob, UnreadableJob, parse_time, read_receiver_job
from rq_signals.listing import describe_retry, describe_sender

#: Most jobs read per list (queue or registry) of each queue; past it the page says counts are partial.
SCAN_LIMIT = 10_000
CHUNK = 500

STATES = ("queued", "retrying", "running", "failed", "finished")
#: The recent windows failed and finished calls are also counted in, by when their job ended.
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}
ENDED_STATES = ("failed", "finished")
#: Count keys beside `STATES`: ``failed_1h``, ``failed_24h``, ``finished_1h``, ``finished_24h``.
WINDOW_COUNTS = tuple(f"{state}_{window}" for state in ENDED_STATES for window in WINDOWS)


@dataclass
class ReceiverStats:
    receiver_id: str
    signals: str = ""
    sender: str = ""
    queue: str = ""
    retry: str = ""
    registered: bool = True
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES + WINDOW_COUNTS, 0))
    last_error: ErrorLine | None = None
    last_error_at: datetime | None = None
    oldest_waiting: datetime | None = None
    failed_url: str = ""  # its queue's failed list, filtered to it

    @property
    def short_name(self) -> str:
        return self.receiver_id.rsplit(".", 1)[-1]

    @property
    def failure_rate(self) -> float | None:
        return self._rate("")

    @property
    def failure_rates(self) -> dict[str, float | None]:
        """Failed / (failed + finished): ``failure_rate`` over all Redis holds, ``failure_rate_1h``..."""
        rates = {"failure_rate": self.failure_rate}
        rates.update({f"failure_rate_{window}": self._rate(f"_{window}") for window in WINDOWS})
        return rates

    @property
    def failure_percents(self) -> dict[str, str]:
        """`failure_rates` as the page shows them: ``"50%"``, or a dash when nothing ended."""
        return {
            key: "\u2014" if rate is None else f"{int(rate * 100 + 0.5)}%"
            for key, rate in self.failure_rates.items()
        }

    def _rate(self, suffix: str) -> float | None:
        failed, finished = self.counts[f"failed{suffix}"], self.counts[f"finished{suffix}"]
        return failed / (failed + finished) if failed + finished else None

    def count_ended(self, state: str, ended_at: datetime | None, now: datetime) -> None:
        """Count a failed or finished call in each of `WINDOWS` that `ended_at` falls in.

        A time after `now` counts as recent: a worker's clock may run ahead of this one's."""
        if state not in ENDED_STATES or ended_at is None:
            return
        ended = ended_at.replace(tzinfo=ended_at.tzinfo or timezone.utc)
        for window, length in WINDOWS.items():
            if ended >= now - length:
                self.counts[f"{state}_{window}"] += 1

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "receiver": self.receiver_id,
            **self.counts,
            **self.failure_rates,
            "last_error": self.last_error.one_line if self.last_error else None,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "oldest_waiting_seconds": (now - self.oldest_waiting).total_seconds()
            if self.oldest_waiting
            else None,
        }


def receiver_stats(now: datetime) -> tuple[list[ReceiverStats], bool]:
    """One `ReceiverStats` per registered receiver (and per unknown one Redis holds calls of); complete?

    `now` (aware) is the end of the last hour and day that failed and finished calls are counted in."""
    rows: dict[str, ReceiverStats] = {}
    for declared in registration.registered():
        rows[declared.receiver_id] = ReceiverStats(
            declared.receiver_id,
            signals=", ".join(ref.name for ref in declared.signals),
            sender=describe_sender(declared.sender),
            queue=declared.queue or conf.default_queue,
            retry=describe_retry(declared.retry),
        )
    complete = True
    for name in sorted(conf.queues):
        for state, jobs, whole in _jobs_by_state(name):
            complete = complete and whole
            for job in jobs:
                _count(rows, state, job, now)
    return list(rows.values()), complete


def _jobs_by_state(name: str) -> Iterator[tuple[str, Iterator[Job], bool]]:
    base = queues.get_queue(name)
    queue = Queue(name, connection=base.connection, serializer=base.serializer, job_class=DashboardJob)
    yield "queued", _fetch(queue, queue.get_job_ids(0, SCAN_LIMIT)), queue.count <= SCAN_LIMIT
    for state, registry_class in (
        ("retrying", ScheduledJobRegistry),
        ("running", StartedJobRegistry),
        ("failed", FailedJobRegistry),
        ("finished", FinishedJobRegistry),
    ):
        registry = registry_class(
            name, connection=queue.connection, job_class=DashboardJob, serializer=queue.serializer
        )
        ids = registry.get_job_ids(0, SCAN_LIMIT - 1, desc=True, cleanup=False)
        yield state, _fetch(queue, ids), registry.count <= SCAN_LIMIT


def _fetch(queue: Queue, ids: list[str]) -> Iterator[Job]:
    for start in range(0, len(ids), CHUNK):
        chunk = DashboardJob.fetch_many(ids[start : start + CHUNK], queue.connection, queue.serializer)
        yield from (job for job in chunk if job is not None)


def _ended_at(job: Job, call: ReceiverJob) -> datetime | None:
    """When `job` ended: rq's ``ended_at``, else its last attempt record's (our workers write one per
    attempt). Not the registry score (end + TTL): the TTL the worker added is not always stored."""
    if job.ended_at is not None:
        return job.ended_at
    return parse_time(call.attempts[-1].ended_at) if call.attempts else None


def _count(rows: dict[str, ReceiverStats], state: str, job: Job, now: datetime) -> None:
    try:
        call = read_receiver_job(job)
    except UnreadableJob:
        return
    if call is None:
        return
    row = rows.get(call.receiver_id)
    if row is None:
        row = rows[call.receiver_id] = ReceiverStats(call.receiver_id, registered=False, queue=job.origin)
    row.counts[state] += 1
    row.count_ended(state, _ended_at(job, call), now)
    if state == "queued" and job.enqueued_at is not None:
        enqueued = job.enqueued_at.replace(tzinfo=job.enqueued_at.tzinfo or timezone.utc)
        row.oldest_waiting = min(filter(None, (row.oldest_waiting, enqueued)))
    for attempt in reversed(call.attempts):
        at = parse_time(attempt.ended_at)
        if attempt.exc_type and at is not None:
            if row.last_error_at is None or at > row.last_error_at:
                row.last_error = ErrorLine(str(attempt.exc_type), str(attempt.message or ""))
                row.last_error_at = at
            break
