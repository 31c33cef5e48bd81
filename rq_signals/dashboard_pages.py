"""django-rq's dashboard URLs with our receiver-aware pages in place of its lists and job page, plus ours.

`receiver_aware` keeps every path and URL name of django-rq's and swaps the views of the job lists
(`rq_signals.dashboard_lists`) and of the job page (`rq_signals.dashboard_job`, which falls back to
django-rq's); it adds the receivers overview (`rq_signals.receivers_overview`). In the admin,
`wrap` is how the admin wraps a view (``admin_view`` and ``request.current_app``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from rq_signals import receivers_overview
from rq_signals.dashboard_job import job_page
from rq_signals.dashboard_limits import View
from rq_signals.dashboard_links import queue_names, rq_url, unserved_message
from rq_signals.dashboard_lists import LISTS, list_view
from rq_signals.health import unserved_retries


def receiver_aware(
    patterns: Iterable[URLPattern], *, name_prefix: str = "", wrap: Callable[[View], View] | None = None
) -> list[URLPattern]:
    """Copies of django-rq's `patterns` with our lists and job page, and the overview's URLs first."""

    def wrapped(view: View) -> View:
        return wrap(view) if wrap is not None else view

    ours: list[URLPattern] = [
        path(route, wrapped(view), name=name_prefix + name)
        for route, view, name in receivers_overview.routes()
    ]
    for pattern in patterns:
        name = (pattern.name or "").removeprefix(name_prefix)
        if pattern.name and pattern.name.startswith(name_prefix) and name in LISTS:
            view = wrapped(list_view(name))
        elif pattern.name == name_prefix + "job_detail":
            view = wrapped(job_page(pattern.callback))
        elif pattern.name == name_prefix + "home":
            view = with_overview_link(pattern.callback)  # wrapped already (in the admin: admin_view)
        elif pattern.name == name_prefix + "queue_details":
            view = with_unserved_banner(pattern.callback)
        else:
            ours.append(pattern)
            continue
        ours.append(URLPattern(pattern.pattern, view, pattern.default_args, pattern.name))
    return ours


def with_overview_link(view: View) -> View:
    """`view` (django-rq's home), with a message linking to the receivers overview."""

    @wraps(view)
    def linked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_active and request.user.is_staff:
            url = rq_url(request, "receivers")
            messages.info(
                request, format_html('What every receiver is doing: <a href="{}">Receivers overview</a>', url)
            )
        return view(request, *args, **kwargs)

    return linked


def with_unserved_banner(view: View) -> View:
    """`view` (django-rq's queue page), with a warning when its retries wait and no retry worker serves it."""

    @wraps(view)
    def warned(request: HttpRequest, queue_index: int, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_active and request.user.is_staff:
            name = queue_names().get(int(queue_index))
            for queue, waiting in unserved_retries([name] if name else []).items():
                messages.warning(request, unserved_message(queue, waiting))
        return view(request, queue_index, *args, **kwargs)

    return warned
