"""`manage.py demo_orders --count 50 [--outage 3] [--every 2]`: sample orders for the demo."""

from __future__ import annotations

import random
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shop import samples
from shop.receivers import WEBHOOK_RETRY


class Command(BaseCommand):
    help = (
        "Create sample orders. --outage N first creates N orders while the partner endpoint is down and "
        "waits until their webhook jobs have used every retry (they end in the failed registry); "
        "--every S then keeps creating one order every S seconds until interrupted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=50, help="orders to create (default 50)")
        parser.add_argument(
            "--outage",
            type=int,
            default=0,
            metavar="N",
            help="orders to create during a partner outage first (default 0)",
        )
        parser.add_argument(
            "--outage-timeout",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="longest wait for the outage orders' webhooks to give up (default 120)",
        )
        parser.add_argument(
            "--every",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="then create one order every SECONDS until interrupted",
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable orders")

    def handle(
        self,
        *args: Any,
        count: int,
        outage: int,
        outage_timeout: float,
        every: float,
        seed: int | None,
        **options: Any,
    ) -> None:
        if count < 0 or outage < 0 or every < 0:
            raise CommandError("--count, --outage and --every take numbers >= 0")
        rng = random.Random(seed)
        if outage:
            self.create_during_outage(rng, outage, outage_timeout)
        for _ in range(count):
            samples.create_order(rng)
        if count:
            self.stdout.write(f"Orders: created {count}; their jobs are on the high, default and low queues.")
        if every:
            self.trickle(rng, every)

    def create_during_outage(self, rng: random.Random, n: int, timeout: float) -> None:
        attempts_each = WEBHOOK_RETRY.max_retries + 1
        outage = samples.start_outage("demo: partner down")
        try:
            order_ids = [samples.create_order(rng).pk for _ in range(n)]
            self.stdout.write(
                f"Outage: created orders {order_ids} while the partner is down; waiting until "
                f"each webhook has been refused {attempts_each} times (1 try + "
                f"{WEBHOOK_RETRY.max_retries} retries with backoff)"
            )
            given_up = samples.webhooks_given_up(order_ids, attempts_each)
            deadline = time.monotonic() + timeout
            last_report = time.monotonic()
            while (done := given_up()) < n:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"Outage: after {timeout:.0f}s only {done}/{n} webhooks had given up; "
                        "is a worker running on the default queue?"
                    )
                if time.monotonic() - last_report >= 5:
                    self.stdout.write(f"Outage: {done}/{n} webhooks given up so far")
                    last_report = time.monotonic()
                time.sleep(0.2)
        finally:
            samples.end_outage(outage)
        self.stdout.write(f"Outage: over; {n} webhook jobs are in the default queue's failed registry")

    def trickle(self, rng: random.Random, every: float) -> None:
        self.stdout.write(f"Orders: one every {every:g}s until interrupted")
        try:
            while True:
                time.sleep(every)
                order = samples.create_order(rng)
                self.stdout.write(f"Orders: created #{order.pk}")
        except KeyboardInterrupt:
            self.stdout.write("Orders: stopped")
