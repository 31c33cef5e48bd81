"""URLs of the test project: the admin, and django-rq's dashboard with its changes gated (rq_signals.urls)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django-rq/", include("rq_signals.urls")),
]
