"""A queue with 1,000 failed receiver calls: its failed list is paged (100 rows a page), filtered or not.

The calls are sent through the real enqueue path, then failed as a worker fails them (an attempt
record in meta, the failed registry, status failed) without running 1,000 jobs. The time a page
takes is printed (``-s``), not asserted: timings belong in ``make bench``.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django_rq.settings import get_queues_map
from django_rq.utils import DEFAULT_ITEMS_PER_PAGE
from rq import Queue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from tests.receivers import invoice_paid
from tests.testapp.models import Invoice
from worker.retries.attempts import Attempt, append_attempt, iso, utcnow
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 1000


def fail_queued(connection, queue_name: str) -> int:
    """Fail every job queued on `queue_name` as a worker would; how many."""
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    registry = FailedJobRegistry(queue=queue)
    jobs = queue.get_jobs()
    with connection.pipeline() as pipe:
        for job in jobs:
            now = utcnow()
            append_attempt(
                job.meta,
                Attempt(
                    1, iso(now), iso(now) or "", "w1", "failed", "shop.WebhookError", "HTTP 503 from partner"
                ),
            )
            job.ended_at = now
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job.save(pipeline=pipe)
            registry.add(job, ttl=3600, pipeline=pipe)
        pipe.execute()
    connection.delete(queue.key)  # off the queue (Queue.empty would delete the jobs too)
    return len(jobs)


def test_a_thousand_failed_calls_are_listed_a_page_at_a_time(client, connection):
    # Given 1,000 failed calls of email_receipt (default policy: 5 retries) on `low`
    invoice = Invoice.objects.create(reference="INV-1", total="5.00")
    for number in range(CALLS):
        invoice_paid.send(sender="desk", invoice=invoice, amount=number)
    assert fail_queued(connection, "low") == CALLS
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    url = f"/django-rq/queues/{get_queues_map()['low']}/failed/"

    # When staff open the failed list, unfiltered and filtered by receiver
    timings = {}
    pages = {}
    for name, query in (
        ("unfiltered", {}),
        ("by receiver", {"receiver": "email_receipt"}),
        ("page 10", {"page": 10}),
    ):
        started = time.perf_counter()
        pages[name] = client.get(url, query).content.decode()
        timings[name] = (time.perf_counter() - started) * 1000
    print(", ".join(f"{name}: {ms:.0f} ms" for name, ms in timings.items()))

    # Then each shows one page of 100 rows, says 1,000 jobs, and links the other pages
    for name, text in pages.items():
        assert text.count('<tr class="rqs-call">') == DEFAULT_ITEMS_PER_PAGE, name
        assert f"{CALLS} jobs" in text, name
        assert "attempt 1 of 6" in text and "WebhookError: HTTP 503 from partner" in text, name
    assert 'class="end">10</a>' in pages["unfiltered"]
    assert '<span class="this-page">10</span>' in pages["page 10"]

    # and the receivers overview counts all of them (and the 1,000 record_payment calls still queued)
    started = time.perf_counter()
    data = client.get("/django-rq/receivers.json").json()
    print(f"receivers.json over {2 * CALLS} jobs: {(time.perf_counter() - started) * 1000:.0f} ms")
    counts = {row["receiver"]: (row["queued"], row["failed"]) for row in data["receivers"]}
    assert counts["tests.receivers.email_receipt"] == (0, CALLS)
    assert counts["tests.receivers.record_payment"] == (CALLS, 0)
