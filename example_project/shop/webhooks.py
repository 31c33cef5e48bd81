"""The order webhook, sending side: POST the order to the partner as JSON, raise on any failure.

Raising is the whole contract with rq_signals: an exception makes the worker retry the job under
its Backoff policy and record the attempt in ``job.meta["attempts"]``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.utils import timezone

from shop.models import Order


class WebhookError(Exception):
    """The partner did not accept a webhook (HTTP error or no answer)."""


def order_event(order: Order, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "order": order.pk,
        "customer_email": order.customer_email,
        "total": str(order.total),
        "status": order.status,
    }


def deliver(order: Order, event: str) -> None:
    """POST `event` for `order` to settings.WEBHOOK_URL; note the delivery time on success."""
    body = json.dumps(order_event(order, event)).encode()
    request = urllib.request.Request(
        settings.WEBHOOK_URL, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise WebhookError(
            f"order {order.pk} {event}: partner answered HTTP {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise WebhookError(
            f"order {order.pk} {event}: partner unreachable at {settings.WEBHOOK_URL}: {exc}"
        ) from exc
    Order.objects.filter(pk=order.pk).update(webhook_delivered_at=timezone.now())
