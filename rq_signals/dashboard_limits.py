"""django-rq's dashboard pages load jobs within RQ_SIGNALS["MAX_JOB_DATA_BYTES"] and ["MAX_JOB_META_BYTES"].

django-rq's views and helpers fetch jobs with ``rq.job.Job`` itself (its ``RQ["JOB_CLASS"]`` setting
reaches queues and workers, not the pages), and rq's restore decompresses a job's data without a
bound: one staff GET of a job whose data is a zlib bomb cost the web process its memory.
`bound_dashboard_jobs` makes those pages load jobs with `DashboardJob` (`worker.gate.limits`), whose
limits are read from the settings on each load. A job over a limit loads with its data unread, so
its page shows "Unpickling Error" for the arguments (django-rq's words for data it cannot decode)
and `note_oversize_jobs` adds a message saying which limit it exceeds. A time field rq cannot parse
(``ended_at: "not a date"``) would make rq's restore raise, and every page listing the job answer
500: a `DashboardJob` loads without it. Never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

import django_rq.utils
import django_rq.views
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django_rq.queues import get_queue_by_index
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.utils import decode_redis_hash, str_to_date

from rq_signals.gate import job_limits
from worker.gate.limits import BoundedJob, JobLimits, oversize

View = Callable[..., HttpResponse]
#: Job hash fields rq's restore parses as times (`rq.utils.str_to_date`), raising ValueError on other text.
TIME_FIELDS = frozenset({"created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat"})
#: The django-rq URL name (without the admin's ``django_rq_`` prefix) of the page showing one job.
JOB_PAGE = "job_detail"


class DashboardJob(BoundedJob):
    """rq's `Job`, loaded within the limits ``RQ_SIGNALS`` sets now (see `rq_signals.gate.job_limits`)."""

    def limits(self) -> JobLimits:
        return job_limits()

    def restore(self, raw_data: Any) -> Any:
        try:
            return super().restore(raw_data)
        except ValueError:  # data from Redis: a time rq cannot parse is left out, the rest loads
            return super().restore(_without_bad_times(raw_data))


def _without_bad_times(raw_data: Any) -> dict[str, Any]:
    fields = decode_redis_hash(raw_data)
    return {name: value for name, value in fields.items() if name not in TIME_FIELDS or _is_time(value)}


def _is_time(value: Any) -> bool:
    try:
        str_to_date(value)
    except (ValueError, TypeError):
        return False
    return True


def bound_dashboard_jobs() -> None:
    """Make django-rq's pages fetch jobs as `DashboardJob`s (called once, by ``AppConfig.ready()``)."""
    # django-rq's private module globals (django-rq 4.2): its views and `get_jobs` name rq's `Job`
    # directly, and its views build queues with `get_queue_by_index`, which passes no job class (so
    # rq's `Job`, whatever RQ["JOB_CLASS"] says). A subclass: isinstance checks and templates still work.
    for module in (django_rq.views, django_rq.utils):
        if module.Job not in (Job, DashboardJob):
            raise RuntimeError(f"rq_signals: {module.__name__}.Job is not rq's Job; django-rq changed")
        module.Job = DashboardJob  # type: ignore[attr-defined]  # see above
    by_index = django_rq.views.get_queue_by_index  # type: ignore[attr-defined]  # see above
    if not getattr(by_index, "bounded", False):
        bounded = _bounded_queues(by_index)
        django_rq.views.get_queue_by_index = bounded  # type: ignore[attr-defined,assignment]  # see above


def _bounded_queues(get_queue_by_index: Callable[[int], Queue]) -> Callable[[int], Queue]:
    @wraps(get_queue_by_index)
    def bounded(index: int) -> Queue:
        queue = get_queue_by_index(index)
        queue.job_class = DashboardJob  # its job list and registries load jobs within the limits
        return queue

    bounded.bounded = True  # type: ignore[attr-defined]  # marks the wrapper: never wrapped twice
    return bounded


def with_oversize_note(view: View) -> View:
    """`view` (django-rq's job page), with a message naming the limit when the job exceeds one."""

    @wraps(view)
    def noted(request: HttpRequest, queue_index: int, job_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (request.user.is_active and request.user.is_staff):
            return view(request, queue_index, job_id, *args, **kwargs)  # django-rq's: to the login
        queue = get_queue_by_index(queue_index)
        try:
            job = DashboardJob.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        except NoSuchJobError:
            job = None  # django-rq's view answers 404
        too_large = oversize(job) if job is not None else None
        if too_large is not None:
            messages.warning(request, f"{too_large}. Shown as stored, without it.")
        return view(request, queue_index, job_id, *args, **kwargs)

    return noted


def note_oversize_jobs(patterns: Iterable[URLPattern], *, name_prefix: str = "") -> list[URLPattern]:
    """Copies of django-rq's `patterns`, its job page wrapped in `with_oversize_note`."""
    return [
        URLPattern(pattern.pattern, with_oversize_note(pattern.callback), pattern.default_args, pattern.name)
        if pattern.name == name_prefix + JOB_PAGE
        else pattern
        for pattern in patterns
    ]
