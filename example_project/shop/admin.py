from __future__ import annotations

from django.contrib import admin

from shop.models import DailyTotal, Order, Outage, WebhookDelivery


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "customer_email",
        "total",
        "status",
        "created",
        "confirmation_sent_at",
        "webhook_delivered_at",
    ]
    list_filter = ["status", "created"]
    search_fields = ["customer_email"]
    readonly_fields = ["confirmation_sent_at", "webhook_delivered_at"]
    date_hierarchy = "created"


@admin.register(DailyTotal)
class DailyTotalAdmin(admin.ModelAdmin):
    list_display = ["day", "orders", "revenue", "updated"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received", "order_number", "event", "status_code"]
    list_filter = ["status_code", "event"]
    search_fields = ["order_number"]


@admin.register(Outage)
class OutageAdmin(admin.ModelAdmin):
    list_display = ["reason", "started"]
