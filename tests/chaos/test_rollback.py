"""Rolled-back transactions send nothing: no job in Redis, no row in the outbox, nothing for a worker.

Four ways to roll back, taken in turn: an exception out of ``atomic()``, ``set_rollback(True)``, a
savepoint rolled back inside a transaction that commits, and ``OUTBOX="always"`` (whose rows are
written inside the transaction). Each saves an order (``post_save`` receivers on Invoice) and sends
a custom signal. One committed transaction of the same shape at the end proves the path works.
"""

from __future__ import annotations

import time

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from rq_signals.models import OutboxEntry
from rq_signals.relay import relay_once
from tests.chaos.harness import Outcome, jobs_in_redis
from tests.testapp.models import Invoice

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


class Declined(Exception):
    pass


def test_rolled_back_transactions_leave_no_job_anywhere(chaos_redis, chaos_receivers, full_size, report):
    count = 100 if full_size else 20
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)

    def order(n: int) -> None:
        Invoice.objects.create(reference=f"rollback-{n}")
        chaos_receivers.work_default.send(sender="chaos", tag=f"rollback-{n}")

    # When `count` transactions that save an order and send a signal all roll back
    for n in range(count):
        way = n % 4
        if way == 0:
            with pytest.raises(Declined), transaction.atomic():
                order(n)
                raise Declined
        elif way == 1:
            with transaction.atomic():
                order(n)
                transaction.set_rollback(True)
        elif way == 2:
            with transaction.atomic(), pytest.raises(Declined), transaction.atomic():  # a savepoint
                order(n)
                raise Declined
        else:
            outbox_always = override_settings(RQ_SIGNALS={"OUTBOX": "always"})
            with outbox_always, pytest.raises(Declined), transaction.atomic():
                order(n)
                raise Declined

    # Then nothing reached Redis or the outbox, and a relay pass finds nothing to send
    after_rollbacks = jobs_in_redis(connection)
    outboxed = OutboxEntry.objects.count()
    relayed = relay_once(using="default").enqueued
    assert Invoice.objects.count() == 0

    # And a committed transaction of the same shape does send its three jobs (the path is live)
    with transaction.atomic():
        order(count)
    after_commit = jobs_in_redis(connection)

    report(
        Outcome(
            "roll back transactions",
            sent=count,
            ran=after_rollbacks["hashes"],
            lost=0,
            overlaps=0,
            failed_as_expected=0,
            seconds=time.monotonic() - began,
            note=f"jobs after rollbacks: {after_rollbacks['hashes']}, outbox rows: {outboxed}",
        )
    )
    assert after_rollbacks == {"high": 0, "default": 0, "low": 0, "hashes": 0}
    assert outboxed == 0
    assert relayed == []
    # record_invoice (high), order_saved and run_default (default)
    assert after_commit == {"high": 1, "default": 2, "low": 0, "hashes": 3}
    connection.close()
