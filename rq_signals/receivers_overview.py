"""The receivers overview: one row per receiver with what Redis holds of its calls, and bulk actions.

The rows are counted by `rq_signals.receivers_counts`: calls by state, failed and finished ones also
in the last hour and day, the failure rate over each, the last error and the oldest waiting call.
The page refreshes itself from the JSON view. Requeue (a fresh retry budget,
`rq_signals.failures.requeue_all`) and delete act on one receiver's failed calls;
`rq_signals.dashboard.gate_mutations` requires ``rq_signals.manage_jobs``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from rq.registry import FailedJobRegistry

from rq_signals import failures, queues
from rq_signals.conf import conf
from rq_signals.dashboard import MANAGE_PERMISSION
from rq_signals.dashboard_limits import DashboardJob, View
from rq_signals.dashboard_links import page_context, queue_indexes, rq_url
from rq_signals.health import unserved_retries
from rq_signals.receivers_counts import SCAN_LIMIT, receiver_stats

#: Seconds between two refreshes of the page (from the JSON view).
REFRESH_SECONDS = 5


@never_cache
@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    now = datetime.now(timezone.utc)
    rows, complete = receiver_stats(now)
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
        "now": now,
    }
    return render(request, "rq_signals/dashboard/receivers.html", context)


@never_cache
@staff_member_required
def overview_json(request: HttpRequest) -> JsonResponse:
    now = datetime.now(timezone.utc)
    rows, complete = receiver_stats(now)
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
