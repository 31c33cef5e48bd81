"""One receiver call's job page: who, what, every attempt with its traceback, the payload for people.

Replaces django-rq's job page for jobs of ``rq_signals.jobs.run_receiver``; any other job, and
``?raw=1`` for ours, gets django-rq's page. A job of ours whose data or payload cannot be read is
shown by django-rq's page too, with a message saying why (never a 500). Jobs are loaded only as
`DashboardJob`, within the job size limits.
"""

from __future__ import annotations

from datetime import datetime, timezone

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from rq.exceptions import NoSuchJobError

from rq_signals.dashboard import MANAGE_PERMISSION
from rq_signals.dashboard_limits import DashboardJob, View
from rq_signals.dashboard_links import dashboard_queue, instance_url, page_context
from rq_signals.dashboard_reading import UnreadableJob, read_receiver_job
from worker.gate.limits import oversize


def job_page(raw_view: View) -> View:
    """Our job page, falling back to `raw_view` (django-rq's) for other jobs and for ``?raw=1``."""

    @never_cache
    @staff_member_required
    def view(request: HttpRequest, queue_index: int, job_id: str) -> HttpResponse:
        queue = dashboard_queue(queue_index)
        try:
            job = DashboardJob.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        except NoSuchJobError:
            raise Http404(
                f"Job {job_id} is not in Redis (finished long ago, deleted, or never there)"
            ) from None
        if request.GET.get("raw"):
            return raw_view(request, queue_index, job_id)
        try:
            call = read_receiver_job(job)
        except UnreadableJob as exc:
            if oversize(job) is None:  # else django-rq's page gets `with_oversize_note`'s message
                messages.warning(request, f"{exc}. Shown raw, as stored.")
            return raw_view(request, queue_index, job_id)
        if call is None:
            return raw_view(request, queue_index, job_id)
        status = job.get_status(refresh=False)
        due = None
        if status is not None and status.value == "scheduled":
            score = queue.connection.zscore(queue.scheduled_job_registry.key, job.id)
            due = datetime.fromtimestamp(score, timezone.utc) if score is not None else None
        context = {
            **page_context(request),
            "queue": queue,
            "queue_index": queue_index,
            "job": job,
            "call": call,
            "status": status.value if status is not None else "unknown",
            "instance_url": instance_url(request, call.instance),
            "attempt_rows": call.attempt_rows(),
            "due": due or call.next_retry_at,
            "now": datetime.now(timezone.utc),
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
        }
        return render(request, "rq_signals/dashboard/job.html", context)

    return view
