"""The receivers overview: one row per receiver with what Redis holds of its calls, and bulk actions.

Counts come from each ``RQ_QUEUES`` queue and its scheduled (retrying), started (running), failed
and finished registries: every job there is read (at most `SCAN_LIMIT` per list, newest first, in
chunks of one pipeline) and counted against its receiver. The page refreshes itself from the JSON
view. Requeue (a fresh retry budget, `rq_signals.failures.requeue_all`) and delete act on one
receiver's failed calls; `rq_signals.dashboard.gate_mutations` requires ``rq_signals.manage_jobs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from rq_signals import failures, queues, registration
from rq_signals.conf import conf
from rq_signals.dashboard import MANAGE_PERMISSION
from rq_signals.dashboard_limits import DashboardJob, View
from rq_signals.dashboard_links import page_context, queue_indexes, rq_url
from rq_signals.dashboard_reading import ErrorLine, UnreadableJob, parse_time, read_receiver_job
from rq_signals.health import unserved_retries
from rq_signals.listing import describe_retry, describe_sender

#: Most jobs read per list (queue or registry) of each queue; past it the page says counts are partial.
SCAN_LIMIT = 10_000
CHUNK = 500
#: Seconds between two refreshes of the page (from the JSON view).
REFRESH_SECONDS = 5

STATES = ("queued", "retrying", "running", "failed", "finished")


@dataclass
class ReceiverStats:
    receiver_id: str
    signals: str = ""
    sender: str = ""
    queue: str = ""
    retry: str = ""
    registered: bool = True
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    last_error: ErrorLine | None = None
    last_error_at: datetime | None = None
    oldest_waiting: datetime | None = None
    failed_url: str = ""  # its queue's failed list, filtered to it

    @property
    def short_name(self) -> str:
        return self.receiver_id.rsplit(".", 1)[-1]

    @property
    def failure_rate(self) -> float | None:
        done = self.counts["failed"] + self.counts["finished"]
        return self.counts["failed"] / done if done else None

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "receiver": self.receiver_id,
            **self.counts,
            "failure_rate": self.failure_rate,
            "last_error": self.last_error.one_line if self.last_error else None,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "oldest_waiting_seconds": (now - self.oldest_waiting).total_seconds()
            if self.oldest_waiting
            else None,
        }


def receiver_stats() -> tuple[list[ReceiverStats], bool]:
    """One `ReceiverStats` per registered receiver (and per unknown one Redis holds calls of); complete?"""
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
                _count(rows, state, job)
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


def _count(rows: dict[str, ReceiverStats], state: str, job: Job) -> None:
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


@never_cache
@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    rows, complete = receiver_stats()
    indexes = queue_indexes()
    for row in rows:
        if row.queue in indexes:
            row.failed_url = (
                f"{rq_url(request, 'failed_jobs', indexes[row.queue])}?receiver={quote(row.receiver_id)}"
            )
    context = {
        **page_context(request),
        "title": "Receivers",
        "rows": rows,
        "complete": complete,
        "scan_limit": SCAN_LIMIT,
        "unserved": unserved_retries(sorted(conf.queues)),
        "can_manage": request.user.has_perm(MANAGE_PERMISSION),
        "refresh_ms": REFRESH_SECONDS * 1000,
        "refresh_seconds": REFRESH_SECONDS,
        "json_url": rq_url(request, "receivers_json"),
        "now": datetime.now(timezone.utc),
    }
    return render(request, "rq_signals/dashboard/receivers.html", context)


@never_cache
@staff_member_required
def overview_json(request: HttpRequest) -> JsonResponse:
    rows, complete = receiver_stats()
    now = datetime.now(timezone.utc)
    return JsonResponse(
        {
            "receivers": [row.as_json(now) for row in rows],
            "complete": complete,
            "unserved": unserved_retries(sorted(conf.queues)),
        }
    )


@never_cache
@staff_member_required
@require_POST
def requeue_failed(request: HttpRequest, receiver_id: str) -> HttpResponse:
    """Requeue every failed call of `receiver_id`, each with a fresh retry budget."""
    count = failures.requeue_all(receiver_id=receiver_id)
    messages.success(
        request, f"Receiver {receiver_id}: {count} failed call(s) requeued with a fresh retry budget."
    )
    return redirect(rq_url(request, "receivers"))


@never_cache
@staff_member_required
def delete_failed(request: HttpRequest, receiver_id: str) -> HttpResponse:
    """GET: a page saying how many failed calls would go; POST: delete them (jobs and registry entries)."""
    calls = failures.failed_calls(receiver_id=receiver_id)
    if request.method != "POST":
        context = {
            **page_context(request),
            "receiver_id": receiver_id,
            "count": len(calls),
            "title": "Delete failed calls",
        }
        return render(request, "rq_signals/dashboard/receivers_delete.html", context)
    deleted = 0
    for call in calls:
        queue = queues.get_queue(call.queue)
        registry = FailedJobRegistry(
            call.queue, connection=queue.connection, job_class=DashboardJob, serializer=queue.serializer
        )
        job = DashboardJob.fetch_many([call.failure.job_id], queue.connection, queue.serializer)[0]
        if job is not None:
            registry.remove(job, delete_job=True)
            deleted += 1
    messages.success(request, f"Receiver {receiver_id}: {deleted} failed call(s) deleted.")
    return redirect(rq_url(request, "receivers"))


def routes() -> list[tuple[str, View, str]]:
    """(route, view, URL name) of the overview's pages, for `rq_signals.dashboard_pages`."""
    return [
        ("receivers/", overview, "receivers"),
        ("receivers.json", overview_json, "receivers_json"),
        ("receivers/<str:receiver_id>/requeue/", requeue_failed, "receivers_requeue"),
        ("receivers/<str:receiver_id>/delete/", delete_failed, "receivers_delete"),
    ]
