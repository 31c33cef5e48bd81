"""The shop's data: orders, the daily totals the analytics receiver keeps, and the partner's side
of the order webhook (what it received, and whether it is down)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        PAID = "paid", "Paid"
        SHIPPED = "shipped", "Shipped"
        CANCELLED = "cancelled", "Cancelled"

    customer_email = models.EmailField()
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0.00"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    # Set by the receivers (with .update(), so they do not send post_save again).
    confirmation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.customer_email}, {self.total})"


class DailyTotal(models.Model):
    """Orders and revenue per day, recomputed by the `low` queue after each order is saved."""

    day = models.DateField(unique=True)
    orders = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day}: {self.orders} orders, {self.revenue}"


class WebhookDelivery(models.Model):
    """One POST the partner endpoint (`/hooks/orders/`) received, and how it answered."""

    order_number = models.PositiveIntegerField(db_index=True)
    event = models.CharField(max_length=32)
    status_code = models.PositiveSmallIntegerField()
    received = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["-received"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"order {self.order_number} {self.event}: HTTP {self.status_code}"


class Outage(models.Model):
    """While any outage exists, the partner endpoint answers every webhook with 503."""

    reason = models.CharField(max_length=200, default="maintenance")
    started = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.reason} (since {self.started:%H:%M:%S})"
