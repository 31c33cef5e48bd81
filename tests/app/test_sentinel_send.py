"""The sender through Sentinel, a server that refuses writes, and writes that must reach a replica.

Queues configured as django-rq documents it (``SENTINELS``, ``MASTER_NAME``); jobs Redis does not take,
for whatever reason (`worker.safety.redis_errors`), go to the outbox, and the relay enqueues each once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from rq_signals import flush_jobs, queues
from rq_signals.models import OutboxEntry
from rq_signals.relay import relay_once
from tests.receivers import invoice_paid
from tests.support.redis_server import RedisServer
from tests.support.sentinel import MASTER_NAME, SentinelSetup
from tests.support.waiting import wait_until
from tests.testapp.models import Invoice

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

QUEUE_NAMES = ("high", "default", "low")


def queued_ids(port: int) -> Counter[str]:
    with redis.Redis(port=port) as conn:
        return Counter(raw.decode() for name in QUEUE_NAMES for raw in conn.lrange(f"rq:queue:{name}", 0, -1))


def outbox_ids() -> set[str]:
    return set(OutboxEntry.objects.values_list("job_id", flat=True))


def place_order(reference: str) -> None:
    """One invoice saved and paid: three jobs, in Redis (or the outbox) when this returns."""
    with transaction.atomic():
        invoice = Invoice.objects.create(reference=reference, total=1)
        invoice_paid.send(sender="checkout", invoice=invoice, amount=1)
    assert flush_jobs(timeout=30)  # FLUSH="background": wait for the writer thread


@pytest.fixture
def sentinel_shop() -> Iterator[SentinelSetup]:
    with SentinelSetup() as setup:
        entry = {"SENTINELS": setup.addresses, "MASTER_NAME": MASTER_NAME, "SOCKET_TIMEOUT": 2}
        try:
            with override_settings(RQ_QUEUES={name: dict(entry) for name in QUEUE_NAMES}):
                yield setup
        finally:
            queues.reset()


@pytest.fixture
def shop_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        with override_settings(RQ_QUEUES={name: {"URL": server.url} for name in QUEUE_NAMES}):
            yield server
    finally:
        queues.reset()
        server.cleanup()


@pytest.mark.parametrize("flush", ["commit", "background"])
def test_orders_through_sentinel_survive_a_killed_master_and_a_planned_failover(sentinel_shop, flush):
    with override_settings(RQ_SIGNALS={"FLUSH": flush}):
        orders_survive_failovers(sentinel_shop)


def orders_survive_failovers(sentinel_shop: SentinelSetup) -> None:
    # Given orders placed through Sentinel (by the committing thread, or the background writer)
    place_order("INV-1")
    assert sum(queued_ids(sentinel_shop.master_port()).values()) == 3

    # When the master is killed: what Redis does not take waits in the outbox...
    sentinel_shop.kill_master()
    place_order("INV-2")
    # ...and the relay enqueues it on the new master, each job once
    report = wait_until(lambda: relay_once().ok and outbox_ids() == set(), timeout=30, what="the relay")
    assert report
    new_port = sentinel_shop.master_port()
    assert sum(queued_ids(new_port).values()) == 6
    assert set(queued_ids(new_port).values()) == {1}

    # When the old master is back as a replica, and then a planned failover makes it master again
    old = next(node for node in sentinel_shop.nodes if node.port != new_port)
    old.start()
    sentinel_shop.wait_replica_online(old)
    sentinel_shop.planned_failover()

    # Then an order placed right after goes to the new master, not to the demoted one
    place_order("INV-3")
    relay_once()
    wait_until(lambda: sum(queued_ids(sentinel_shop.master_port()).values()) == 9, timeout=10, what="9 jobs")
    assert set(queued_ids(sentinel_shop.master_port()).values()) == {1}


def test_a_server_refusing_writes_noreplicas_sends_the_jobs_to_the_outbox(shop_redis, caplog):
    admin = redis.Redis(port=shop_redis.port)
    admin.config_set("min-replicas-to-write", 1)
    with caplog.at_level(logging.WARNING, logger="rq_signals"):
        place_order("INV-1")
    assert len(outbox_ids()) == 3
    assert "NOREPLICAS" in caplog.text

    admin.config_set("min-replicas-to-write", 0)
    assert len(relay_once().enqueued) == 3
    assert queued_ids(shop_redis.port) == Counter(dict.fromkeys(queued_ids(shop_redis.port), 1))
    assert sum(queued_ids(shop_redis.port).values()) == 3


def test_replica_acks_keeps_an_unacknowledged_write_in_the_outbox_and_relays_it_once(shop_redis, caplog):
    # Given a master with no replica, and jobs that must reach one
    with override_settings(RQ_SIGNALS={"REPLICA_ACKS": 1, "REPLICA_ACK_TIMEOUT": 0.05}):
        with caplog.at_level(logging.WARNING, logger="rq_signals"):
            place_order("INV-1")
        # Then the jobs are in Redis, and in the outbox too, with a warning saying why
        assert sum(queued_ids(shop_redis.port).values()) == 3
        assert len(outbox_ids()) == 3
        assert "ReplicasBehind" in caplog.text
        # And the relay keeps them while no replica has them
        assert not relay_once().ok
        assert len(outbox_ids()) == 3

    # When a replica has them (here: acknowledgements no longer asked for), the relay drops the rows,
    # and no job is enqueued twice
    report = relay_once()
    assert len(report.already_there) == 3 and report.enqueued == []
    assert outbox_ids() == set()
    assert set(queued_ids(shop_redis.port).values()) == {1}


def test_replica_acks_with_a_replica_in_sync_writes_straight_to_redis(shop_redis):
    with RedisServer(extra_args=["--replicaof", "127.0.0.1", str(shop_redis.port)]) as replica:
        wait_until(
            lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up",
            timeout=20,
            what="the replica to sync",
        )
        with override_settings(RQ_SIGNALS={"REPLICA_ACKS": 1, "REPLICA_ACK_TIMEOUT": 2.0}):
            place_order("INV-1")
            with transaction.atomic():  # several queues in one transaction: the other path of the writer
                for n in range(2):
                    place_order(f"INV-{n + 2}")
        assert outbox_ids() == set()
        assert sum(queued_ids(replica.port).values()) == 9
