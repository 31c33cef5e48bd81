"""A queue's job lists (queued, scheduled, started, failed, finished, deferred) that say what each job is.

django-rq's lists show a job id and ``rq_signals.jobs.run_receiver`` for every row. These views
keep its URLs, paging and look, and show for a receiver call: the receiver (short name, dotted path
on hover), signal, instance (linked to its admin page), ``attempt n of m``, the last error on one
line and, for scheduled jobs, when the next attempt is due. Other jobs keep django-rq's columns.

``?receiver=`` and ``?exc=`` filter a list: the newest `SCAN_LIMIT` entries are read (in chunks of
`CHUNK`, one pipeline each) and those matching are paged; unfiltered lists read one page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django_rq.utils import DEFAULT_ITEMS_PER_PAGE, paginate
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    BaseRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from rq_signals import registration
from rq_signals.dashboard import MANAGE_PERMISSION
from rq_signals.dashboard_links import dashboard_queue, instance_url, page_context
from rq_signals.dashboard_reading import ReceiverJob, UnreadableJob, read_receiver_job
from rq_signals.health import unserved_retries

#: Most entries a filtered list reads (newest first); past it the page says so.
SCAN_LIMIT = 10_000
#: Jobs fetched per Redis round trip.
CHUNK = 500

View = Callable[..., HttpResponse]

#: django-rq URL name -> (status shown, registry class; None: the queue itself).
LISTS: dict[str, tuple[str, type[BaseRegistry] | None]] = {
    "jobs": ("Queued", None),
    "finished_jobs": ("Finished", FinishedJobRegistry),
    "failed_jobs": ("Failed", FailedJobRegistry),
    "scheduled_jobs": ("Scheduled", ScheduledJobRegistry),
    "started_jobs": ("Started", StartedJobRegistry),
    "deferred_jobs": ("Deferred", DeferredJobRegistry),
}


@dataclass(frozen=True)
class Row:
    job: Job
    call: ReceiverJob | None
    unreadable: str | None
    due: datetime | None  # scheduled: when the next attempt is due (the registry's score)
    instance_url: str | None


def list_view(name: str) -> View:
    """The view of django-rq's list `name` (a key of `LISTS`)."""
    status, registry_class = LISTS[name]

    @never_cache
    @staff_member_required
    def view(request: HttpRequest, queue_index: int) -> HttpResponse:
        queue = dashboard_queue(queue_index)
        receiver = request.GET.get("receiver", "").strip()
        exc = request.GET.get("exc", "").strip()
        desc = request.GET.get("desc", "1") == "1"
        source = _Source(queue, registry_class, desc)
        if receiver or exc:
            jobs, scanned_all = source.matching(receiver, exc)
            num_jobs = len(jobs)
            page, page_range, offset = paginate(request, num_jobs)
            jobs = jobs[offset : offset + DEFAULT_ITEMS_PER_PAGE]
        else:
            num_jobs, scanned_all = source.count(), True
            page, page_range, offset = paginate(request, num_jobs)
            jobs = source.jobs(offset, DEFAULT_ITEMS_PER_PAGE)
        due = source.due([job.id for job in jobs]) if status == "Scheduled" else {}
        context = {
            **page_context(request),
            "queue": queue,
            "queue_index": queue_index,
            "job_status": status,
            "list_name": name,
            "rows": [_row(request, job, due.get(job.id)) for job in jobs],
            "num_jobs": num_jobs,
            "page": page,
            "page_range": page_range,
            "sort_direction": "descending" if desc else "ascending",
            "receiver": receiver,
            "exc": exc,
            "scan_limit": None if scanned_all else SCAN_LIMIT,
            "receivers": [declared.receiver_id for declared in registration.registered()],
            "can_manage": request.user.has_perm(MANAGE_PERMISSION),
            "unserved": unserved_retries([queue.name]),
            "now": datetime.now(timezone.utc),
        }
        return render(request, "rq_signals/dashboard/job_list.html", context)

    return view


class _Source:
    """The job ids of one list, newest first unless `desc` is False, and their jobs."""

    def __init__(self, queue: Queue, registry_class: type[BaseRegistry] | None, desc: bool) -> None:
        self.queue = queue
        self.desc = desc
        self.registry = (
            registry_class(
                queue.name,
                connection=queue.connection,
                job_class=queue.job_class,
                serializer=queue.serializer,
            )
            if registry_class is not None
            else None
        )

    def count(self) -> int:
        return self.queue.count if self.registry is None else self.registry.count

    def ids(self, offset: int, length: int) -> list[str]:
        if self.registry is None:
            return self.queue.get_job_ids(offset, length)
        # cleanup=False: a page view writes nothing to Redis (django-rq's lists clean up on GET).
        return self.registry.get_job_ids(offset, offset + length - 1, desc=self.desc, cleanup=False)

    def jobs(self, offset: int, length: int) -> list[Job]:
        return self.fetch(self.ids(offset, length))

    def fetch(self, ids: list[str]) -> list[Job]:
        job_class = self.queue.job_class
        fetched = job_class.fetch_many(
            ids, connection=self.queue.connection, serializer=self.queue.serializer
        )
        return [job for job in fetched if job is not None]

    def matching(self, receiver: str, exc: str) -> tuple[list[Job], bool]:
        """Jobs among the newest `SCAN_LIMIT` that match; and whether that was the whole list."""
        total = self.count()
        found: list[Job] = []
        for offset in range(0, min(total, SCAN_LIMIT), CHUNK):
            for job in self.jobs(offset, min(CHUNK, SCAN_LIMIT - offset)):
                call = _read(job)[0]
                if call is not None and call.matches(receiver, exc):
                    found.append(job)
        return found, total <= SCAN_LIMIT

    def due(self, ids: list[str]) -> dict[str, datetime]:
        """When each scheduled job is due: its score in the scheduled registry (seconds, Redis clock)."""
        if self.registry is None or not ids:
            return {}
        with self.queue.connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.zscore(self.registry.key, job_id)
            scores = pipe.execute()
        return {
            job_id: datetime.fromtimestamp(score, timezone.utc)
            for job_id, score in zip(ids, scores, strict=True)
            if score is not None
        }


def _read(job: Job) -> tuple[ReceiverJob | None, str | None]:
    try:
        return read_receiver_job(job), None
    except UnreadableJob as exc:
        return None, str(exc)


def _row(request: HttpRequest, job: Job, due: datetime | None) -> Row:
    call, unreadable = _read(job)
    link = instance_url(request, call.instance) if call is not None else None
    return Row(job, call, unreadable, due, link)
