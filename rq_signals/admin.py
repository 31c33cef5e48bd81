"""The outbox in the admin: jobs waiting for Redis, read-only (the relay owns them); staff only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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
