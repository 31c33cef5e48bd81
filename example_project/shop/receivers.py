"""The shop's slow work, run by an RQ worker after the order's transaction commits.

Three queues, by urgency: the customer's confirmation email first (`high`), the partner webhook
(`default`, which fails now and then and is retried with exponential backoff), the daily totals
last (`low`). rq_signals finds this module because it is called `receivers.py`.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.utils import timezone

from rq_signals import Backoff, async_receiver
from shop import analytics, notifications, webhooks
from shop.models import Order

#: Short delays so retries are visible in the demo: about 1, 2, 4, 8 s (equal jitter), then failed.
WEBHOOK_RETRY = Backoff(max_retries=4, base=1.0, max_delay=30, jitter="equal")


@async_receiver(post_save, sender=Order, queue="high", retry=Backoff(max_retries=5, base=0.5, max_delay=60))
def send_order_confirmation(sender: type[Order], instance: Order, created: bool, **kwargs: Any) -> None:
    if created:
        notifications.send_confirmation(instance)


@async_receiver(post_save, sender=Order, queue="default", retry=WEBHOOK_RETRY)
def notify_partner(sender: type[Order], instance: Order, created: bool, **kwargs: Any) -> None:
    webhooks.deliver(instance, "order.created" if created else "order.updated")


@async_receiver(post_save, sender=Order, queue="low", retry=Backoff(max_retries=3, base=0.5))
def update_daily_totals(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    analytics.refresh_daily_total(timezone.localdate(instance.created))
