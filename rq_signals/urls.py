"""django-rq's dashboard URLs, where requeue, delete, stop, empty and clear need a permission.

Mount it instead of django-rq's own: ``path("django-rq/", include("rq_signals.urls"))``. Paths, URL
names and the ``django_rq`` namespace are django-rq's, so its templates and ``reverse`` still work;
the job lists and job page say what each receiver call is, and ``receivers/`` is the receivers
overview (`rq_signals.dashboard_pages`), ``receivers/metrics/`` the per-receiver metrics
(`rq_signals.metrics`).
"""

from __future__ import annotations

from django.urls import path
from django_rq.urls import urlpatterns as django_rq_urlpatterns

from rq_signals.dashboard import gate_mutations
from rq_signals.dashboard_limits import note_oversize_jobs
from rq_signals.dashboard_pages import receiver_aware
from rq_signals.metrics import metrics_view

app_name = "django_rq"
urlpatterns = [
    # Prometheus' text format, for staff or RQ_SIGNALS["METRICS_TOKEN"] (rq_signals.metrics).
    path("receivers/metrics/", metrics_view, name="rq_signals_metrics"),
    *gate_mutations(receiver_aware(note_oversize_jobs(django_rq_urlpatterns))),
]
