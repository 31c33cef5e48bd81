"""Orders committed while Redis is down are not lost: their jobs wait in the outbox, the worker relays them.

A worker runs; Redis stops; orders are committed one per transaction (each saves an Invoice: two
``post_save`` receivers, ``tests.receivers.record_invoice`` and ``tests.chaos.receivers.order_saved``);
Redis starts again. Every receiver of every order runs, once Redis is back, without any other process:
the worker's maintenance chores include the outbox relay.
"""

from __future__ import annotations

import time

import pytest
import redis

from rq_signals import defaults
from rq_signals.models import OutboxEntry
from tests.chaos.harness import Ledger, Outcome, failed_count, wait_for_all
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: The relay runs every OUTBOX_RELAY_INTERVAL_SECONDS (5 s): three passes, plus a reconnect on a busy machine.
RELAY_BOUND_SECONDS = 3 * defaults.OUTBOX_RELAY_INTERVAL_SECONDS + 10


def test_orders_committed_while_redis_is_down_all_run_once_it_is_back(
    persistent_redis, worker_pool, chaos_receivers, full_size, report
):
    count = 100 if full_size else 20
    began = time.monotonic()
    worker_pool.start(persistent_redis, "fork")

    # Given Redis is down
    persistent_redis.stop()

    # When `count` orders are committed, one transaction each
    references = [f"order-{n}" for n in range(count)]
    for reference in references:
        Invoice.objects.create(reference=reference)  # autocommit: its own transaction

    # Then every order is saved and its two jobs wait in the outbox
    assert Invoice.objects.count() == count
    assert OutboxEntry.objects.count() == 2 * count

    # When Redis is back
    persistent_redis.start()

    # Then, with no other process, the worker relays the outbox and every receiver runs
    connection = redis.Redis.from_url(persistent_redis.url)
    try:
        wait_until(
            lambda: not OutboxEntry.objects.exists(),
            timeout=RELAY_BOUND_SECONDS,
            what="the worker's relay to empty the outbox",
        )
        ledger = wait_for_all(connection, references, timeout=60, what="order_saved of every order")
        wait_until(
            lambda: Effect.objects.filter(receiver="record_invoice").count() >= count,
            timeout=30,
            what="record_invoice of every order",
        )
    finally:
        ledger = Ledger.read(connection)
        report(
            Outcome(
                "stop Redis, commit orders, start",
                sent=2 * count,
                ran=len(ledger.completed(references))
                + len(set(Effect.objects.filter(receiver="record_invoice").values_list("key", flat=True))),
                lost=len(ledger.missing(references))
                + count
                - len(set(Effect.objects.filter(receiver="record_invoice").values_list("key", flat=True))),
                overlaps=len(ledger.overlaps),
                failed_as_expected=0,
                seconds=time.monotonic() - began,
                reruns=ledger.reruns(references),
                note=f"{count} orders x 2 receivers; outbox left: {OutboxEntry.objects.count()}",
            )
        )
    assert not OutboxEntry.objects.exists()
    assert Effect.objects.filter(receiver="record_invoice").count() == count  # each once
    assert failed_count(connection) == 0
    connection.close()
