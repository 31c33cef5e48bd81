from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from shop.views import order_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/shop/order/")),
    path("admin/", admin.site.urls),
    # django-rq's own dashboard (queues, jobs, failed registry, requeue); its views are staff-only.
    path("django-rq/", include("django_rq.urls")),
    # The partner's endpoint the `default` queue POSTs order webhooks to.
    path("hooks/orders/", order_webhook, name="order-webhook"),
]
