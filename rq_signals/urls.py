"""django-rq's dashboard URLs, where requeue, delete, stop, empty and clear need a permission.

Mount it instead of django-rq's own: ``path("django-rq/", include("rq_signals.urls"))``. Paths, URL
names and the ``django_rq`` namespace are django-rq's, so its templates and ``reverse`` still work.
"""

from __future__ import annotations

from django_rq.urls import urlpatterns as django_rq_urlpatterns

from rq_signals.dashboard import gate_mutations
from rq_signals.dashboard_limits import note_oversize_jobs

app_name = "django_rq"
urlpatterns = gate_mutations(note_oversize_jobs(django_rq_urlpatterns))
