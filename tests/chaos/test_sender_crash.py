"""A web process killed between its commit and the enqueue loses no job under ``OUTBOX="always"``.

A sender subprocess commits orders in one transaction and is SIGKILLed by a callback that runs right
after the commit, before rq-signals' flush (`tests.chaos.sender`). With ``OUTBOX="always"`` the jobs
were written to the outbox inside the transaction, so they are committed with the orders; the worker's
relay sends them and it runs every receiver. (With the default ``"on_failure"`` they would be lost:
that mode keeps nothing before the commit; see docs/guarantees.md.)
"""

from __future__ import annotations

import signal
import sys
import time

import pytest
import redis

from rq_signals.models import OutboxEntry
from tests.chaos.harness import Outcome, failed_count, jobs_in_redis, wait_for_all
from tests.support.processes import Proc
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_sender_killed_after_its_commit_loses_no_job_with_outbox_always(
    chaos_redis, worker_pool, chaos_receivers, tmp_path, full_size, report
):
    count = 100 if full_size else 20
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)

    # When a sender commits `count` orders and is killed before it can enqueue their jobs
    sender = Proc(
        [sys.executable, "-m", "tests.chaos.sender", str(count)],
        env={
            "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
            "RQ_SIGNALS_CHAOS_REDIS_URL": chaos_redis.url,
            "RQ_SIGNALS_CHAOS_OUTBOX": "always",
        },
        log_path=tmp_path / "sender.log",
    )
    assert sender.wait(60) == -signal.SIGKILL, sender.log_path.read_text()

    # Then the orders are committed, Redis has no job, and the jobs wait in the outbox
    references = [f"crash-{n}" for n in range(count)]
    assert Invoice.objects.count() == count
    assert jobs_in_redis(connection) == {"high": 0, "default": 0, "low": 0, "hashes": 0}
    assert OutboxEntry.objects.count() == 2 * count

    # And a worker relays them and runs every receiver of every order
    worker_pool.start(chaos_redis, "fork")
    ledger = wait_for_all(connection, references, timeout=120, what="order_saved of every order")
    wait_until(
        lambda: Effect.objects.filter(receiver="record_invoice").count() >= count,
        timeout=60,
        what="record_invoice of every order",
    )
    report(
        Outcome(
            "sender killed after commit (always)",
            sent=2 * count,
            ran=len(ledger.completed(references)) + Effect.objects.filter(receiver="record_invoice").count(),
            lost=len(ledger.missing(references)),
            overlaps=len(ledger.overlaps),
            failed_as_expected=0,
            seconds=time.monotonic() - began,
            reruns=ledger.reruns(references),
            note=f"{count} orders x 2 receivers, relayed by the worker",
        )
    )
    assert not OutboxEntry.objects.exists()
    assert Effect.objects.filter(receiver="record_invoice").count() == count
    assert ledger.reruns(references) == 0
    assert failed_count(connection) == 0
    connection.close()
