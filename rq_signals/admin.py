"""The admin: the outbox (jobs waiting for Redis, read-only), django-rq's dashboard with our receiver-aware
pages (its changes gated), and the receivers overview linked from the admin index."""

from __future__ import annotations

from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from rq_signals.dashboard import gate_mutations
from rq_signals.dashboard_limits import View, note_oversize_jobs
from rq_signals.dashboard_pages import receiver_aware
from rq_signals.models import OutboxEntry, ReceiversOverview


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
        pages = receiver_aware(noted, name_prefix="django_rq_", wrap=self._admin_view)
        return [*gate_mutations(pages, name_prefix="django_rq_"), *own]

    def _admin_view(self, view: View) -> View:
        """`view` as django-rq's admin wraps its own: the admin's login and ``request.current_app``."""

        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request.current_app = self.admin_site.name
            return self.admin_site.admin_view(view)(request, *args, **kwargs)

        return wrapper


@admin.register(ReceiversOverview)
class ReceiversOverviewAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    """The admin index's "Receivers overview" row: its list is the overview page of the dashboard."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        in_admin = admin.site.is_registered(Dashboard)
        name = f"{self.admin_site.name}:django_rq_receivers" if in_admin else "django_rq:receivers"
        return HttpResponseRedirect(reverse(name))


if admin.site.is_registered(Dashboard):  # unless RQ_SHOW_ADMIN_LINK = False
    admin.site.unregister(Dashboard)
    admin.site.register(Dashboard, DashboardAdmin)
