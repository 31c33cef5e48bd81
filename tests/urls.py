"""URLs of the test project: the admin, and django-rq's dashboard (where job pages show attempts)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
]
