"""django-rq's dashboard with a permission on every view that changes jobs or queues.

django-rq checks ``staff_member_required`` only, so any staff user may requeue, delete, stop, empty
and clear. `gate_mutations` keeps django-rq's URL patterns (paths, names) and wraps each view that is
not known to be read-only in a check of `MANAGE_PERMISSION`; staff without it get 403, users who are
not staff are still sent to the login page, superusers pass. Read-only pages stay staff-only.

Unknown views fail closed: a view a later django-rq adds is gated until it is listed in `READ_ONLY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern

#: Granted to whoever may requeue, delete, stop, empty and clear; declared on `OutboxEntry`'s Meta.
MANAGE_PERMISSION = "rq_signals.manage_jobs"

#: django-rq URL names (without the admin's ``django_rq_`` prefix) whose views change nothing.
READ_ONLY = frozenset(
    {
        "home",
        "home_json",
        "metrics",
        "jobs",
        "queue_details",
        "finished_jobs",
        "failed_jobs",
        "scheduled_jobs",
        "started_jobs",
        "deferred_jobs",
        "job_detail",
        "result_detail",
        "workers",
        "worker_details",
        "scheduler_jobs",
        "cron_scheduler_detail",
        "cron_job_detail",
        "receivers",  # rq_signals.receivers_overview
        "receivers_json",
    }
)

View = Callable[..., HttpResponse]


def require_manage_permission(view: View) -> View:
    """`view`, for staff with `MANAGE_PERMISSION` only: 403 for other staff, login for non-staff."""

    @wraps(view)
    def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(MANAGE_PERMISSION):
            raise PermissionDenied(f"{request.path}: needs the {MANAGE_PERMISSION} permission")
        return view(request, *args, **kwargs)

    # Non-staff are sent to log in first, as by django-rq's views, rather than told 403.
    checked: View = staff_member_required(gated)
    checked.required_permission = MANAGE_PERMISSION  # type: ignore[attr-defined]  # marks a gated view
    return checked


def is_read_only(name: str | None, *, name_prefix: str = "") -> bool:
    """Whether the django-rq URL called `name` (after `name_prefix`) is a page that changes nothing."""
    return name is not None and name.startswith(name_prefix) and name[len(name_prefix) :] in READ_ONLY


def gate_mutations(patterns: Iterable[URLPattern], *, name_prefix: str = "") -> list[URLPattern]:
    """Copies of django-rq's `patterns`, each view not `is_read_only` wrapped in the permission check.

    `name_prefix` is the one django-rq gives the URL names it registers in the admin (``django_rq_``).
    """
    return [
        pattern
        if is_read_only(pattern.name, name_prefix=name_prefix)
        else URLPattern(
            pattern.pattern, require_manage_permission(pattern.callback), pattern.default_args, pattern.name
        )
        for pattern in patterns
    ]
