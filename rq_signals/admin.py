"""The admin: the outbox (jobs waiting for Redis, read-only) and django-rq's dashboard, its changes gated."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from rq_signals.dashboard import gate_mutations
from rq_signals.dashboard_limits import note_oversize_jobs
from rq_signals.models import OutboxEntry


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    list_display = ("job_id", "queue", "receiver", "created_at", "attempts", "last_error")
    list_filter = ("queue", "receiver")
    search_fields = ("job_id", "receiver")
    readonly_fields = ("job_id", "queue", "receiver", "data", "created_at", "attempts", "last_error")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DashboardAdmin(QueueAdmin):
    """django-rq's dashboard in the admin, its changes gated as in `rq_signals.urls`."""

    def get_urls(self) -> list[URLPattern]:
        own = admin.ModelAdmin.get_urls(self)  # the changelist (django-rq's home) and the rest, last
        dashboard = super().get_urls()[: -len(own)]  # type: ignore[no-untyped-call]  # django-rq's is untyped
        noted = note_oversize_jobs(dashboard, name_prefix="django_rq_")
        return [*gate_mutations(noted, name_prefix="django_rq_"), *own]


if admin.site.is_registered(Dashboard):  # unless RQ_SHOW_ADMIN_LINK = False
    admin.site.unregister(Dashboard)
    admin.site.register(Dashboard, DashboardAdmin)
