"""Daily totals: recomputed from the orders table, so running it twice (a retry) is harmless."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from shop.models import DailyTotal, Order


def refresh_daily_total(day: datetime.date) -> DailyTotal:
    figures = (
        Order.objects.filter(created__date=day)
        .exclude(status=Order.Status.CANCELLED)
        .aggregate(orders=Count("id"), revenue=Sum("total"))
    )
    total, _ = DailyTotal.objects.update_or_create(
        day=day, defaults={"orders": figures["orders"], "revenue": figures["revenue"] or Decimal("0.00")}
    )
    return total
