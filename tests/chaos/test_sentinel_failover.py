"""Redis behind Sentinel: the master killed mid-run, then a planned failover; no job lost, none run twice.

A master with a replica (AOF) and three sentinels on loopback (`tests.support.sentinel`), a worker of each
class and this process sending a steady stream of signals (~20 transactions a second), all configured
through Sentinel (``RQ_QUEUES`` entries with ``SENTINELS`` and ``MASTER_NAME``), with ``OUTBOX="always"``
and ``REPLICA_ACKS=1``: a job counts as written once the replica has it, and until then its outbox row
stays (the relay enqueues a job id once). The master is killed with SIGKILL; Sentinel promotes the
replica; the killed node is started again and Sentinel makes it a replica; then ``SENTINEL FAILOVER``
moves the master back. Busy or idle, every worker follows both failovers: work resumes within 5 s of
the promotion. While the new master has no replica in sync (after the kill, until the old node is back;
after the planned failover, until Sentinel demotes the old master, about ten seconds) every job also
waits in the outbox: that is `REPLICA_ACKS` doing its job, at a cost of `REPLICA_ACK_TIMEOUT` per save.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from django.test import override_settings

from rq_signals import queues
from rq_signals.models import OutboxEntry
from tests.chaos.harness import QUEUE_NAMES, Feeder, Ledger, Outcome, failed_count, send, wait_for_all
from tests.support.sentinel import MASTER_NAME, SentinelSetup
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOLD_SECONDS = 0.05
FEED_INTERVAL_SECONDS = 0.05  # ~20 transactions a second
SETTINGS = {"OUTBOX": "always", "REPLICA_ACKS": 1, "REPLICA_ACK_TIMEOUT": 0.5}


@pytest.fixture
def sentinel_redis() -> Iterator[SentinelSetup]:
    with SentinelSetup() as setup:
        entry = {"SENTINELS": setup.addresses, "MASTER_NAME": MASTER_NAME, "DEFAULT_TIMEOUT": 60}
        try:
            with override_settings(
                RQ_QUEUES={name: dict(entry) for name in QUEUE_NAMES}, RQ_SIGNALS=SETTINGS
            ):
                yield setup
        finally:
            queues.reset()


class _Master:
    """What `WorkerPool.wait_ready` needs of a server: a URL that reaches the current master."""

    def __init__(self, setup: SentinelSetup) -> None:
        self.url = setup.master_url()


def completed(setup: SentinelSetup) -> int:
    try:
        with setup.master_client() as connection:
            return sum(Ledger.read(connection).ended.values())
    except redis.RedisError:
        return 0


def test_master_killed_then_planned_failover_lose_no_job(
    sentinel_redis, worker_pool, chaos_receivers, full_size, report
):
    setup = sentinel_redis
    began = time.monotonic()
    rounds = 3 if full_size else 1
    worker_pool.env = {
        "RQ_SIGNALS_CHAOS_SENTINELS": setup.sentinels_env(),
        "RQ_SIGNALS_CHAOS_MASTER_NAME": MASTER_NAME,
        "RQ_SIGNALS_TEST_SETTINGS": json.dumps(SETTINGS),
    }
    master = _Master(setup)
    workers = [worker_pool.start(master, kind, wait=False) for kind in ("fork", "simple", "prefork")]
    for proc in workers:
        worker_pool.wait_ready(master, proc)
    signals = (chaos_receivers.work_high, chaos_receivers.work_default, chaos_receivers.work_low)
    feeder = Feeder(
        lambda n: send(signals[n % 3], [f"failover-{n}"], hold_seconds=HOLD_SECONDS),
        interval_seconds=FEED_INTERVAL_SECONDS,
    )
    feeder.start()
    outboxed: set[str] = set()
    resumed_after: list[float] = []
    try:
        for _ in range(rounds):
            for planned in (False, True):
                # Given jobs completing
                done = completed(setup)
                wait_until(lambda done=done: completed(setup) >= done + 20, timeout=60, what="20 more jobs")
                # When the master goes (killed, or moved by Sentinel)
                old, promoted_at = setup.planned_failover() if planned else setup.kill_master()
                outboxed |= set(OutboxEntry.objects.values_list("job_id", flat=True))
                # Then jobs complete on the new master within 5 s of the promotion
                done = completed(setup)
                wait_until(lambda done=done: completed(setup) >= done + 3, timeout=30, what="work to resume")
                resumed_after.append(time.monotonic() - promoted_at)
                if not planned:  # the killed node comes back; Sentinel makes it a replica
                    old.start()
                    setup.wait_replica_online(old)
        sent = feeder.stop()
    finally:
        if feeder.is_alive():
            feeder.stop()

    # Then the outbox drains and every job sent ran, none twice at once
    outboxed |= set(OutboxEntry.objects.values_list("job_id", flat=True))
    wait_until(lambda: not OutboxEntry.objects.exists(), timeout=60, what="the outbox to drain")
    connection = setup.master_client()
    ledger = wait_for_all(connection, sent, timeout=60, what="every job of the stream to complete")
    failed = failed_count(connection)
    report(
        Outcome.of_stream(
            "Sentinel: kill -9 master, planned failover",
            ledger,
            sent,
            began=began,
            note=f"{rounds}x (kill, return as replica, SENTINEL FAILOVER); OUTBOX=always, REPLICA_ACKS=1; "
            f"{len(outboxed)} via outbox; work resumed {max(resumed_after):.1f} s after promotion at worst",
        )
    )
    assert ledger.missing(sent) == []
    assert ledger.overlaps == set(), {tag: ledger.runs.get(tag) for tag in ledger.overlaps}
    assert failed == 0, worker_pool.logs()[-5000:]
    assert max(resumed_after) < 5.0
    assert all(proc.alive() for proc in workers), worker_pool.logs()[-5000:]
    assert "unhandled exception" not in worker_pool.logs()
    connection.close()
