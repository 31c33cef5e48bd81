"""Made-up orders for the demo, and the outage that makes some of their webhooks fail for good."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

from django.db.models import Count

from shop.models import Order, Outage, WebhookDelivery

FIRST_NAMES = ["ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances", "guido"]
DOMAINS = ["example.com", "example.org", "example.net"]


def create_order(rng: random.Random) -> Order:
    """One order, committed on its own, so its receivers' jobs are enqueued at once."""
    name = rng.choice(FIRST_NAMES)
    return Order.objects.create(
        customer_email=f"{name}.{rng.randint(1, 999)}@{rng.choice(DOMAINS)}",
        total=Decimal(rng.randint(500, 50_000)) / 100,
        status=rng.choice([Order.Status.NEW, Order.Status.NEW, Order.Status.PAID]),
    )


def deliveries_per_order(order_ids: list[int]) -> dict[int, int]:
    rows = (
        WebhookDelivery.objects.filter(order_number__in=order_ids)
        .values("order_number")
        .annotate(n=Count("id"))
    )
    counts = {row["order_number"]: row["n"] for row in rows}
    return {order_id: counts.get(order_id, 0) for order_id in order_ids}


def start_outage(reason: str) -> Outage:
    return Outage.objects.create(reason=reason)


def end_outage(outage: Outage) -> None:
    Outage.objects.filter(pk=outage.pk).delete()


def webhooks_given_up(order_ids: list[int], attempts_each: int) -> Callable[[], int]:
    """A progress probe: how many of `order_ids` have had all `attempts_each` deliveries refused."""

    def probe() -> int:
        return sum(1 for n in deliveries_per_order(order_ids).values() if n >= attempts_each)

    return probe
