"""Links the dashboard pages build: django-rq URL names (in the admin or not), instances' admin pages."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django_rq.queues import get_queue_by_index
from django_rq.settings import get_queues_list
from django_rq.views import each_context
from rq.queue import Queue

from rq_signals.dashboard_limits import DashboardJob
from rq_signals.dashboard_payload import InstanceRef


def rq_url(request: HttpRequest, name: str, *args: Any) -> str:
    """The URL of django-rq's (or our) dashboard view `name`, in the admin when the request came from it."""
    current_app = getattr(request, "current_app", None)
    viewname = f"{current_app}:django_rq_{name}" if current_app else f"django_rq:{name}"
    return reverse(viewname, args=args)


def dashboard_queue(queue_index: int) -> Queue:
    """django-rq's queue number `queue_index`, loading its jobs as `DashboardJob` (within the size limits)."""
    queue = get_queue_by_index(queue_index)
    queue.job_class = DashboardJob
    return queue


def queue_indexes() -> dict[str, int]:
    """Each queue's number in django-rq's dashboard URLs, by name."""
    return {config["name"]: index for index, config in enumerate(get_queues_list())}


def queue_names() -> dict[int, str]:
    """Each queue's name by its number in django-rq's dashboard URLs."""
    return {index: name for name, index in queue_indexes().items()}


def unserved_message(queue: str, waiting: int) -> str:
    """The banner's words: `waiting` retries of `queue` that no retry worker serves."""
    return (
        f"Queue {queue}: {waiting} job(s) wait for a retry and no retry worker has been seen serving it for "
        f"longer than a lease (3 s). Start: manage.py rqworker --worker-class worker.RetryWorker {queue}"
    )


def instance_url(request: HttpRequest, instance: InstanceRef | None) -> str | None:
    """The admin change page of `instance`, when its model is registered and the user may view it."""
    if instance is None:
        return None
    try:
        model = apps.get_model(instance.label)
    except (LookupError, ValueError):
        return None
    model_admin = admin.site._registry.get(model)  # the default site's registry: Django has no public getter
    if model_admin is None or not model_admin.has_view_permission(request):
        return None
    opts = model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk])
    except NoReverseMatch:
        return None


def page_context(request: HttpRequest) -> dict[str, Any]:
    """django-rq's page context (the admin's), without the admin's app sidebar: the tables need the width."""
    return {**each_context(request), "is_nav_sidebar_enabled": False}
