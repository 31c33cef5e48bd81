"""Staff open the receivers overview: each receiver's calls by state, its last error, and (with the
``rq_signals.manage_jobs`` permission, behind CSRF) requeue or delete its failed calls.

Jobs fail for real on a worker subprocess; a banner says when retries wait and no retry worker serves them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.utils import utcformat

from rq_signals import queues
from tests.receivers import invoice_flagged
from worker import keys

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "<script>alert(1)</script>"
ALWAYS_FAILS = "tests.receivers.always_fails"
RECORD_NOTE = "tests.receivers.record_note"
PREFIXES = ["/django-rq", "/admin/django_rq/dashboard"]


def staff_client(*, manager: bool, enforce_csrf_checks: bool = False) -> Client:
    user = User.objects.create_user("ops", password="x", is_staff=True)
    if manager:
        user.user_permissions.add(Permission.objects.get(codename="manage_jobs"))
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


@pytest.fixture
def failed(run_worker, connection) -> list[str]:
    """Two calls of `always_fails` (1 retry each) failed on a real worker, their messages markup."""
    invoice_flagged.send(sender="desk", reason=SCRIPT)
    invoice_flagged.send(sender="desk", reason="fraud")
    run_worker()
    return [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_overview_counts_each_receivers_calls_and_shows_its_last_error_escaped(failed, prefix):
    # Given a third call queued, no worker running
    invoice_flagged.send(sender="desk", reason="late")
    client = staff_client(manager=False)

    # When staff open the overview
    page = client.get(f"{prefix}/receivers/")

    # Then always_fails' row says its signal, queue, policy in words, counts and last error
    assert page.status_code == 200
    text = page.content.decode()
    row = text[text.index(f'<tr data-receiver="{ALWAYS_FAILS}">') :]
    row = row[: row.index("</tr>")]
    assert '<span class="rqs-signal">tests.receivers.invoice_flagged</span>' in row
    assert '<span class="rqs-queue">default</span>' in row
    assert "1 retries, 0s x2 up to 600s, jitter none" in row
    assert '<td class="rqs-count" data-state="queued">1</td>' in row
    assert 'data-state="failed" href=' in row and ">2</a>" in row
    assert "100%" in row  # 2 failed, none finished
    assert "Flaky: cannot handle" in row
    # record_note (no retries) finished both times it ran
    assert '<tr data-receiver="tests.receivers.record_note">' in text
    # and no user text is markup; without the permission, no action
    assert SCRIPT not in text
    assert "Requeue all" not in text


def test_the_overview_json_feeds_the_page_refresh(failed):
    client = staff_client(manager=False)

    data = client.get("/django-rq/receivers.json").json()

    [row] = [row for row in data["receivers"] if row["receiver"] == ALWAYS_FAILS]
    assert (row["failed"], row["queued"], row["failure_rate"]) == (2, 0, 1.0)
    assert row["last_error"].startswith("Flaky: cannot handle")
    assert data["unserved"] == {}


def ended(connection, job_id: str, *, ago: timedelta) -> None:
    """Rewrite when job `job_id` ended (its hash's ``ended_at``, as rq writes it) to `ago` before now."""
    connection.hset(f"rq:job:{job_id}", "ended_at", utcformat(datetime.now(timezone.utc) - ago))


def row_of(text: str, receiver_id: str) -> str:
    row = text[text.index(f'<tr data-receiver="{receiver_id}">') :]
    return row[: row.index("</tr>")]


def test_failed_and_finished_calls_are_also_counted_in_the_last_hour_and_day(run_worker, connection):
    # Given three flagged invoices: each call of always_fails failed and each of record_note finished
    for reason in ("fraud", "late", "duplicate"):
        invoice_flagged.send(sender="desk", reason=reason)
    run_worker()
    failed = [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]
    finished = [raw.decode() for raw in connection.zrange("rq:finished:default", 0, -1)]
    assert (len(failed), len(finished)) == (3, 3)
    # and one failure ended 2 hours ago, one 2 days ago; one finished call ended 2 days ago
    ended(connection, failed[0], ago=timedelta(hours=2))
    ended(connection, failed[1], ago=timedelta(days=2))
    ended(connection, finished[0], ago=timedelta(days=2))
    client = staff_client(manager=False)

    # When staff's page refreshes from the JSON view
    data = {row["receiver"]: row for row in client.get("/django-rq/receivers.json").json()["receivers"]}

    # Then the totals are all Redis holds, the windows count by when each call ended
    fails, notes = data[ALWAYS_FAILS], data[RECORD_NOTE]
    assert (fails["failed"], fails["failed_1h"], fails["failed_24h"]) == (3, 1, 2)
    assert (notes["finished"], notes["finished_1h"], notes["finished_24h"]) == (3, 2, 2)
    assert (fails["failure_rate"], fails["failure_rate_1h"], fails["failure_rate_24h"]) == (1.0, 1.0, 1.0)
    assert (notes["failure_rate"], notes["failure_rate_1h"], notes["failure_rate_24h"]) == (0.0, 0.0, 0.0)
    # (receivers with no call in a window say so: no rate)
    assert data["tests.receivers.record_payment"]["failure_rate_1h"] is None

    # and the page shows the same, each window under its total
    text = client.get("/django-rq/receivers/").content.decode()
    fails_row, notes_row = row_of(text, ALWAYS_FAILS), row_of(text, RECORD_NOTE)
    assert (
        '<span data-state="failed_1h">1</span> &middot; <span data-state="failed_24h">2</span>' in fails_row
    )
    assert (
        '<span data-state="finished_1h">2</span> &middot; <span data-state="finished_24h">2</span>'
        in notes_row
    )
    assert '<span data-rate="failure_rate_1h">0%</span>' in notes_row


def test_the_failure_rate_over_the_last_hour_and_day_counts_both_outcomes_of_one_receiver(
    run_worker, connection
):
    # Given four calls of always_fails that failed on a real worker
    for reason in ("fraud", "late", "duplicate", "spam"):
        invoice_flagged.send(sender="desk", reason=reason)
    run_worker()
    failed = [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]
    assert len(failed) == 4
    # the first of them then finished (ended now): rq's bookkeeping of a finished job, done by hand
    queue = queues.get_queue("default")
    job = Job.fetch(failed[0], connection=connection, serializer=queue.serializer)
    FailedJobRegistry(queue=queue).remove(job)
    job.set_status(JobStatus.FINISHED)
    FinishedJobRegistry(queue=queue).add(job, ttl=500)
    # one failure ended 2 hours ago, one 2 days ago; one stays recent
    ended(connection, failed[1], ago=timedelta(hours=2))
    ended(connection, failed[2], ago=timedelta(days=2))
    client = staff_client(manager=False)

    data = {row["receiver"]: row for row in client.get("/django-rq/receivers.json").json()["receivers"]}

    # Then over the last hour 1 failed of 2 ended, over the day 2 of 3, over all Redis holds 3 of 4
    row = data[ALWAYS_FAILS]
    assert (row["failed_1h"], row["failed_24h"], row["finished_1h"], row["finished_24h"]) == (1, 2, 1, 1)
    assert (row["failure_rate_1h"], row["failure_rate_24h"], row["failure_rate"]) == (0.5, 2 / 3, 0.75)
    text = row_of(client.get("/django-rq/receivers/").content.decode(), ALWAYS_FAILS)
    assert '<span data-rate="failure_rate">75%</span>' in text
    assert '<span data-rate="failure_rate_1h">50%</span>' in text
    assert '<span data-rate="failure_rate_24h">67%</span>' in text


def test_a_call_whose_job_hash_has_no_ended_at_is_counted_by_its_last_attempt_record(run_worker, connection):
    # Given two failed calls of always_fails, one of whose hashes lost its ended_at (its attempt
    # records, written by the worker, still say when each attempt ended), and one that ended 2 days ago
    for reason in ("fraud", "late"):
        invoice_flagged.send(sender="desk", reason=reason)
    run_worker()
    failed = [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]
    connection.hdel(f"rq:job:{failed[0]}", "ended_at")
    ended(connection, failed[1], ago=timedelta(days=2))
    client = staff_client(manager=False)

    data = {row["receiver"]: row for row in client.get("/django-rq/receivers.json").json()["receivers"]}

    # Then the first still counts in the last hour and day, by its last attempt's end
    row = data[ALWAYS_FAILS]
    assert (row["failed"], row["failed_1h"], row["failed_24h"]) == (2, 1, 1)


def test_a_job_hash_whose_ended_at_is_not_a_time_still_lets_the_overview_and_lists_answer(
    run_worker, connection
):
    # Given two failed calls, one of whose hashes says it ended "not a date" (written to Redis by hand)
    for reason in ("fraud", "late"):
        invoice_flagged.send(sender="desk", reason=reason)
    run_worker()
    failed = [raw.decode() for raw in connection.zrange("rq:failed:default", 0, -1)]
    connection.hset(f"rq:job:{failed[0]}", "ended_at", "not a date")
    client = staff_client(manager=False)
    from django_rq.settings import get_queues_map

    index = get_queues_map()["default"]

    # When staff open the overview, its JSON, the failed list and the job's page
    data = {row["receiver"]: row for row in client.get("/django-rq/receivers.json").json()["receivers"]}
    pages = [
        "/django-rq/receivers/",
        f"/django-rq/queues/{index}/failed/",
        f"/django-rq/queues/{index}/{failed[0]}/",
    ]

    # Then each answers, and the call counts in the windows by its last attempt record
    assert [client.get(path).status_code for path in pages] == [200, 200, 200]
    row = data[ALWAYS_FAILS]
    assert (row["failed"], row["failed_1h"], row["failed_24h"]) == (2, 2, 2)


def test_anonymous_users_are_sent_to_log_in_and_staff_without_permission_get_403(failed, client, connection):
    for path in ("/django-rq/receivers/", "/django-rq/receivers.json"):
        assert client.get(path).status_code == 302
    requeue = f"/django-rq/receivers/{ALWAYS_FAILS}/requeue/"
    delete = f"/django-rq/receivers/{ALWAYS_FAILS}/delete/"
    assert client.post(requeue).status_code == 302  # to the login
    staff = staff_client(manager=False)
    for path in (requeue, delete, f"/admin/django_rq/dashboard/receivers/{ALWAYS_FAILS}/requeue/"):
        assert staff.post(path).status_code == 403, path
    assert staff.get(delete).status_code == 403
    assert connection.zcard("rq:failed:default") == 2  # nothing requeued nor deleted


@pytest.mark.parametrize("prefix", PREFIXES)
def test_requeue_all_needs_a_csrf_token_then_runs_the_failed_calls_again(
    failed, run_worker, connection, prefix
):
    manager = staff_client(manager=True, enforce_csrf_checks=True)
    url = f"{prefix}/receivers/{ALWAYS_FAILS}/requeue/"

    # A forged POST (no token) is refused
    assert manager.post(url).status_code == 403
    assert connection.zcard("rq:failed:default") == 2

    # The form's POST (with the page's token) requeues both, with a fresh budget
    page = manager.get(f"{prefix}/receivers/").content.decode()
    assert "Requeue all" in page
    token = manager.cookies["csrftoken"].value
    answer = manager.post(url, {"csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    assert connection.zcard("rq:failed:default") == 0
    assert connection.llen("rq:queue:default") == 2
    # and they run again (and fail again: the receiver always does), each 2 more attempts
    run_worker()
    data = manager.get("/django-rq/receivers.json").json()
    [row] = [row for row in data["receivers"] if row["receiver"] == ALWAYS_FAILS]
    assert row["failed"] == 2


def test_delete_shows_how_many_then_deletes_them_after_confirmation(failed, connection):
    manager = staff_client(manager=True, enforce_csrf_checks=True)
    url = f"/django-rq/receivers/{ALWAYS_FAILS}/delete/"

    confirm = manager.get(url).content.decode()
    assert "Delete the 2 failed calls of <code>tests.receivers.always_fails</code>?" in confirm
    assert manager.post(url).status_code == 403  # no CSRF token
    assert connection.zcard("rq:failed:default") == 2

    answer = manager.post(url, {"csrfmiddlewaretoken": manager.cookies["csrftoken"].value})

    assert answer.status_code == 302
    assert connection.zcard("rq:failed:default") == 0
    assert not any(connection.exists(f"rq:job:{job_id}") for job_id in failed)


def test_a_banner_says_when_retries_wait_and_no_retry_worker_serves_the_queue(connection):
    # Given a retry waiting in the scheduled registry of `default`, and no promoter lease
    invoice_flagged.send(sender="desk", reason="fraud")
    [job_id] = [raw.decode() for raw in connection.lrange("rq:queue:default", 0, -1)][:1]
    connection.zadd("rq:scheduled:default", {job_id: 2_000_000_000})
    client = staff_client(manager=False)
    from django_rq.settings import get_queues_map

    index = get_queues_map()["default"]

    # Then the overview and the queue's lists show the banner
    for path in ("/django-rq/receivers/", f"/django-rq/queues/{index}/scheduled/"):
        text = client.get(path).content.decode()
        assert "Queue default: 1 job waits for a retry and no retry worker" in text, path
    assert client.get("/django-rq/receivers.json").json()["unserved"] == {"default": 1}
    details = client.get(f"/django-rq/queues/{index}/details/").content.decode()
    assert "Queue default: 1 job(s) wait for a retry and no retry worker has been seen serving it" in details

    # When a retry worker holds the promoter lease (a live worker hash names it)
    connection.hset("rq:worker:retry-1", mapping={"hostname": "h", "queues": "default"})
    connection.set(keys.promoter_lease("default"), "retry-1", px=3000)

    # Then no banner
    assert 'class="error rqs-unserved"' not in client.get("/django-rq/receivers/").content.decode()
    assert "no retry worker" not in client.get(f"/django-rq/queues/{index}/details/").content.decode()
    assert client.get("/django-rq/receivers.json").json()["unserved"] == {}


def test_the_admin_index_links_to_the_overview(failed):
    client = staff_client(manager=False)

    index = client.get("/admin/").content.decode()

    assert "/admin/rq_signals/receiversoverview/" in index
    answer = client.get("/admin/rq_signals/receiversoverview/")
    assert answer.status_code == 302 and answer["Location"] == "/admin/django_rq/dashboard/receivers/"
    home = client.get("/django-rq/").content.decode()
    assert "Receivers overview</a>" in home
