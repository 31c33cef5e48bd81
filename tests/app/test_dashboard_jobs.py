"""Staff open a queue's failed list and a failed job's page: they read which receiver, which instance,
how many attempts and what went wrong, not ``<uuid> rq_signals.jobs.run_receiver`` and a meta repr.

The jobs fail for real on a worker subprocess. Values a user controls (an instance's fields, an
exception message) hold markup, which every page shows as text.
"""

from __future__ import annotations

import importlib

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import clear_url_caches
from django_rq.settings import get_queues_map
from rq import Queue

import tests.urls
from tests.receivers import invoice_flagged
from tests.testapp.models import Invoice
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "<script>alert(1)</script>"
PREFIXES = ["/django-rq", "/admin/django_rq/dashboard"]


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    return client


@pytest.fixture
def failed(run_worker, connection) -> dict[str, str]:
    """`always_fails` (1 retry) and `record_note` (no retry) ran and failed on a real worker, about an
    invoice whose reference is markup, with markup in the exception message; their job ids by receiver."""
    invoice = Invoice.objects.create(reference=SCRIPT, total="9.99")
    invoice_flagged.send(sender="desk", reason=SCRIPT, invoice=invoice)
    run_worker()
    ids = [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    return {queue.fetch_job(job_id).args[0].rsplit(".", 1)[-1]: job_id for job_id in ids}


def default_index() -> int:
    return get_queues_map()["default"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_failed_list_names_receiver_instance_attempts_and_error_escaped(staff, failed, prefix):
    # When staff open the failed list of `default`
    page = staff.get(f"{prefix}/queues/{default_index()}/failed/")

    # Then each row says which receiver (dotted path on hover), signal, instance, attempts and error
    assert page.status_code == 200
    text = page.content.decode()
    assert 'title="tests.receivers.always_fails"><strong>always_fails</strong>' in text
    assert "<strong>record_note</strong>" in text
    assert "invoice_flagged" in text
    invoice = Invoice.objects.get()
    assert f"testapp.Invoice pk={invoice.pk}" in text
    assert "attempt 2 of 2" in text  # always_fails: 1 try + 1 retry
    assert "attempt 1 of 1" in text  # record_note: retry=False
    assert "Flaky: cannot handle &lt;script&gt;alert(1)&lt;/script&gt;" in text
    # and nothing a user wrote is markup
    assert SCRIPT not in text


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_failed_list_filters_by_receiver_and_by_exception_type(staff, failed, prefix):
    url = f"{prefix}/queues/{default_index()}/failed/"

    by_receiver = staff.get(url, {"receiver": "tests.receivers.always_fails"}).content.decode()
    by_short_name = staff.get(url, {"receiver": "record_note"}).content.decode()
    by_exception = staff.get(url, {"exc": "Flaky"}).content.decode()
    by_other_exception = staff.get(url, {"exc": "KeyError"}).content.decode()

    assert failed["always_fails"] in by_receiver and failed["record_note"] not in by_receiver
    assert failed["record_note"] in by_short_name and failed["always_fails"] not in by_short_name
    assert failed["always_fails"] in by_exception and failed["record_note"] not in by_exception
    assert "0 jobs" in by_other_exception and failed["always_fails"] not in by_other_exception


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_failed_jobs_page_shows_header_attempts_tracebacks_and_payload_escaped(staff, failed, prefix):
    # When staff open the failed always_fails job
    page = staff.get(f"{prefix}/queues/{default_index()}/{failed['always_fails']}/")

    # Then the header says receiver, signal, instance, status and attempt n of m
    assert page.status_code == 200
    text = page.content.decode()
    invoice = Invoice.objects.get()
    assert "<code>tests.receivers.always_fails</code>" in text
    assert f"testapp.Invoice pk={invoice.pk}" in text
    assert '<dd class="rqs-status">failed</dd>' in text
    assert "attempt 2 of 2" in text
    # an attempts table with both attempts, their outcomes and collapsible tracebacks,
    assert text.count('<tr class="rqs-attempt-row">') == 2
    assert ">retrying</td>" in text and ">failed</td>" in text
    assert text.count('<details class="rqs-traceback">') == 2
    # the receiver's own frame shown, the library frames folded apart
    assert "tests/receivers.py&quot;, line" in text
    assert '<details class="rqs-library">' in text
    # the payload for people: the snapshot fields as a table, other arguments as values
    assert "<td>reference</td><td><code>&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;</code></td>" in text
    assert "<td>reason</td>" in text
    assert "__rqs__" not in text
    # the raw job one click away, and nothing a user wrote is markup
    assert 'href="?raw=1"' in text
    assert SCRIPT not in text
    raw = staff.get(f"{prefix}/queues/{default_index()}/{failed['always_fails']}/", {"raw": "1"})
    assert raw.status_code == 200 and "__rqs__" in raw.content.decode()


def test_an_instance_links_to_its_admin_page_when_registered_and_viewable(staff, failed, admin_client):
    invoice = Invoice.objects.get()
    url = f"/django-rq/queues/{default_index()}/{failed['always_fails']}/"
    change = f"/admin/testapp/invoice/{invoice.pk}/change/"
    admin.site.register(Invoice)
    reload_urls()
    try:
        # staff without the view permission: no link; a superuser: the link
        assert change not in staff.get(url).content.decode()
        assert (
            f'<a href="{change}">testapp.Invoice pk={invoice.pk}</a>'
            in admin_client.get(url).content.decode()
        )
    finally:
        admin.site.unregister(Invoice)
        reload_urls()


def reload_urls() -> None:
    """The admin's URLs are built when the URLconf is imported: rebuild them after (un)registering."""
    importlib.reload(tests.urls)
    clear_url_caches()


def test_a_receiver_job_whose_payload_cannot_be_decoded_is_shown_raw_with_a_note(staff, connection):
    # Given a job of run_receiver whose payload is not (receiver, signal, payload)
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue_call("rq_signals.jobs.run_receiver", args=("tests.receivers.always_fails",))
    # and one whose data is not JSON at all
    broken = queue.enqueue_call("rq_signals.jobs.run_receiver", args=("x", "y", {}))
    connection.hset(broken.key, "data", b"\x00not json")

    for job_id in (job.id, broken.id):
        # When staff open its page
        page = staff.get(f"/django-rq/queues/{default_index()}/{job_id}/")
        # Then it is shown raw (django-rq's page) with a note saying why, not a 500
        assert page.status_code == 200
        text = page.content.decode()
        assert f"Job {job_id}: " in text and "Shown raw, as stored." in text

    # and the queued list shows both, the broken one with its note
    listing = staff.get(f"/django-rq/queues/{default_index()}/").content.decode()
    assert job.id in listing and broken.id in listing
    assert f"Job {broken.id}: its data cannot be decoded" in listing


def test_a_scheduled_list_says_when_each_retry_is_due(staff, connection):
    # Given a call waiting in the scheduled registry, due at 2033-05-18 03:33:20 UTC
    invoice_flagged.send(sender="desk", reason="fraud")
    job_id = connection.lrange("rq:queue:default", 0, 0)[0].decode()
    connection.lrem("rq:queue:default", 0, job_id)
    connection.zadd("rq:scheduled:default", {job_id: 2_000_000_000})

    text = staff.get(f"/django-rq/queues/{default_index()}/scheduled/").content.decode()

    # Then its row says when, relative and absolute
    row = text[text.index(job_id) :]
    assert '<td class="rqs-due"><span title="2033-05-18 03:33:20 UTC">in ' in row
    assert "always_fails" in row or "record_note" in row


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_list_of_a_queue_answers_with_our_rows(staff, failed, prefix):
    for path in ("", "finished/", "failed/", "scheduled/", "started/", "deferred/"):
        page = staff.get(f"{prefix}/queues/{default_index()}/{path}")
        assert page.status_code == 200, path
        assert '<table id="result_list" class="rqs-table">' in page.content.decode(), path


def test_hostile_job_data_from_redis_is_shown_without_a_500(staff, connection):
    # Given receiver jobs whose attempt records and payload hold whatever someone wrote to Redis
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    nested: object = "x"
    for _ in range(500):
        nested = [nested]
    odd_payloads = [
        {"format": 1, "signal": SCRIPT, "kwargs": {"sender": {"__rqs__": "model_class", "v": SCRIPT}}},
        {"format": 1, "kwargs": {"instance": {"__rqs__": "model", "v": {"label": 5, "fields": [1]}}}},
        {"format": 1, "kwargs": {"value": {"__rqs__": "nope", "v": 1}, "deep": nested}},
    ]
    ids = []
    for payload in odd_payloads:
        job = queue.enqueue_call(
            "rq_signals.jobs.run_receiver", args=(SCRIPT, "x.y", payload), description="odd"
        )
        job.meta.update(
            {
                "attempts": [
                    {"attempt": "1", "ended_at": 5, "worker": [], "outcome": SCRIPT, "traceback": 7},
                    {
                        "attempt": 2,
                        "ended_at": "2026-01-01T00:00:00",
                        "worker": "w",
                        "outcome": "failed",
                        "exc_type": SCRIPT,
                        "message": {"a": 1},
                        "retry_at": [1],
                        "started_at": {},
                    },
                    "not a record",
                ],
                "retry_policy": {"max_retries": "many"},
                "attempts_dropped": -4,
            }
        )
        job.save_meta()
        ids.append(job.id)

    # When staff open the queue, each job, and the overview
    pages = [f"/django-rq/queues/{default_index()}/", "/django-rq/receivers/", "/django-rq/receivers.json"]
    pages += [f"/django-rq/queues/{default_index()}/{job_id}/" for job_id in ids]
    for path in pages:
        page = staff.get(path)
        # Then every page answers, and the markup stays text (the JSON is data, set as text by the page)
        assert page.status_code == 200, path
        if path.endswith(".json"):
            assert page["Content-Type"] == "application/json"
        else:
            assert SCRIPT not in page.content.decode(), path
