from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from shop.views import order_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/shop/order/")),
    path("admin/", admin.site.urls),
    # django-rq's dashboard (queues, jobs, failed registry) for staff; requeue, delete, stop, empty and
    # clear also need the rq_signals.manage_jobs permission (superusers have it).
    path("django-rq/", include("rq_signals.urls")),
    # The partner's endpoint the `default` queue POSTs order webhooks to.
    path("hooks/orders/", order_webhook, name="order-webhook"),
]
