"""``receiver_enqueued``: heard once per job, once Redis has it, with the time since the commit;
whichever path wrote it (the commit, the background writer, the outbox, the relay)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from rq_signals import flush_jobs, lifecycle, queues
from rq_signals.relay import relay_once
from tests.receivers import record_invoice
from tests.support.redis_server import RedisServer
from tests.testapp.models import Invoice

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE_NAMES = ("high", "default", "low")


@pytest.fixture
def heard() -> Iterator[list[dict]]:
    events: list[dict] = []

    def listen(signal, sender, **kwargs):
        events.append({"sender": sender, **kwargs})

    lifecycle.receiver_enqueued.connect(listen, dispatch_uid="test_lifecycle_enqueued")
    yield events
    lifecycle.receiver_enqueued.disconnect(dispatch_uid="test_lifecycle_enqueued")


@pytest.fixture
def shop_redis() -> Iterator[RedisServer]:
    """A private Redis of this test (not the session's), our queues pointed at it; stopped by its pid."""
    server = RedisServer(persistent=True).start()
    rq_queues = {name: {"URL": server.url, "DEFAULT_TIMEOUT": 60} for name in QUEUE_NAMES}
    try:
        with override_settings(RQ_QUEUES=rq_queues):  # queues.reset() runs on setting_changed
            yield server
    finally:
        queues.reset()
        server.cleanup()


def queued_ids(url: str) -> Counter[str]:
    conn = redis.Redis.from_url(url)
    try:
        return Counter(raw.decode() for name in QUEUE_NAMES for raw in conn.lrange(f"rq:queue:{name}", 0, -1))
    finally:
        conn.close()


def save_invoices(count: int) -> None:
    with transaction.atomic():
        for n in range(count):
            Invoice.objects.create(reference=f"ENQ-{n}")


def test_a_job_is_heard_enqueued_after_its_commit_wrote_it_and_never_after_a_rollback(heard, redis_url):
    # Given a transaction that saves two invoices (a record_invoice job each)
    with transaction.atomic():
        Invoice.objects.create(reference="ENQ-A")
        Invoice.objects.create(reference="ENQ-B")
        assert heard == []  # nothing is in Redis before the commit
    committed_at = time.time()

    # Then each job is heard once, as Redis has it, with the seconds from the commit to Redis
    assert Counter(event["job_id"] for event in heard) == queued_ids(redis_url)
    for event in heard:
        assert event["sender"] is record_invoice
        assert event["receiver_id"] == "tests.receivers.record_invoice"
        assert (event["queue"], event["attempt"]) == ("high", 1)
        assert event["instance"].label == "testapp.Invoice"
        assert 0 <= event["latency"] <= time.time() - committed_at + 1

    # When a transaction rolls back, nothing more is heard
    with pytest.raises(RuntimeError), transaction.atomic():
        Invoice.objects.create(reference="ENQ-C")
        raise RuntimeError("card declined")
    assert len(heard) == 2


def test_jobs_redis_refused_at_commit_are_heard_when_the_relay_sends_them_with_the_wait_since_the_commit(
    heard, shop_redis
):
    # Given Redis is down when three invoices commit: their jobs wait in the outbox, unheard
    shop_redis.stop()
    save_invoices(3)
    committed_by = time.time()
    assert heard == []

    # When Redis is back and the relay sends them
    shop_redis.start()
    relayed_from = time.time()
    report = relay_once(using="default")

    # Then each is heard once, its latency counting the whole time it waited for Redis
    assert sorted(event["job_id"] for event in heard) == sorted(report.enqueued)
    assert len(report.enqueued) == 3
    assert {str(event["instance"]) for event in heard} == {
        f"testapp.Invoice pk={pk}" for pk in Invoice.objects.values_list("pk", flat=True)
    }
    assert all(event["latency"] >= relayed_from - committed_by for event in heard)
    # ... and a second pass, with nothing to send, is not heard
    relay_once(using="default")
    assert len(heard) == 3


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_always_jobs_are_heard_once_when_delivered(heard, shop_redis):
    save_invoices(2)

    assert Counter(event["job_id"] for event in heard) == queued_ids(shop_redis.url)
    assert len(heard) == 2


@override_settings(RQ_SIGNALS={"FLUSH": "background"})
def test_jobs_written_by_the_background_writer_are_heard_once_it_wrote_them(heard, redis_url):
    save_invoices(2)

    assert flush_jobs(timeout=10)
    assert Counter(event["job_id"] for event in heard) == queued_ids(redis_url)
    assert len(heard) == 2
    assert all(event["latency"] >= 0 for event in heard)
