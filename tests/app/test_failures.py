"""A receiver that keeps failing: its attempts in the django-rq admin, `manage.py rqsignals` to act on it."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_rq.settings import get_queues_map

from rq_signals.management.commands.rqsignals import Command
from tests.receivers import invoice_flagged
from tests.support.memory import PeakRss, zlib_bomb
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def rqsignals(*args: str, stderr: StringIO | None = None) -> str:
    out = StringIO()
    call_command("rqsignals", *args, stdout=out, stderr=stderr or StringIO())
    return out.getvalue()


@pytest.fixture
def failed_job_id(run_worker, connection) -> str:
    """`always_fails` ran twice on a real worker (one retry) and is in the failed registry."""
    invoice_flagged.send(sender="desk", reason="fraud")
    run_worker()
    [job_id] = connection.zrange("rq:failed:default", 0, -1)
    return job_id.decode()


def test_a_failed_jobs_page_in_the_django_rq_admin_shows_its_attempts(admin_client, failed_job_id):
    url = reverse("django_rq:job_detail", args=[get_queues_map()["default"], failed_job_id])

    page = admin_client.get(url).content.decode()

    assert "tests.receivers.always_fails" in page  # the receiver id, the job's first argument
    assert page.count('<tr class="rqs-attempt-row">') == 2  # job.meta, attempt by attempt
    assert page.count("tests.receivers.Flaky") >= 2
    assert ">retrying</td>" in page and ">failed</td>" in page


def test_the_worker_reports_each_failed_attempt_and_whether_it_will_be_retried(failed_job_id):
    attempts = [effect.value for effect in Effect.objects.filter(receiver="lifecycle").order_by("pk")]

    assert attempts == [
        {
            "job_id": failed_job_id,
            "attempt": 1,
            "will_retry": True,
            "exception": "Flaky('cannot handle fraud')",
        },
        {
            "job_id": failed_job_id,
            "attempt": 2,
            "will_retry": False,
            "exception": "Flaky('cannot handle fraud')",
        },
    ]


def test_failures_can_be_listed_requeued_and_purged(failed_job_id, run_worker, connection):
    # Listing, narrowed by receiver and queue
    listing = rqsignals("failures")
    assert f"{failed_job_id}  default  tests.receivers.always_fails" in listing
    assert "attempts: 2" in listing and "tests.receivers.Flaky: cannot handle fraud" in listing
    assert rqsignals("failures", "--receiver", "tests.receivers.record_note").endswith("0 failed call(s).\n")
    assert rqsignals("failures", "--queue", "high").endswith("0 failed call(s).\n")

    # Requeue one job by id: it runs again with a fresh budget, and fails again
    assert rqsignals("requeue", failed_job_id) == f"Requeued job {failed_job_id} on queue 'default'.\n"
    assert connection.zcard("rq:failed:default") == 0
    log = run_worker()
    assert "attempts: 4" in rqsignals("failures"), log

    # Requeue all, narrowed by a receiver with no failures: nothing moves
    assert rqsignals("requeue", "--all", "--receiver", "tests.receivers.record_note") == (
        "Requeued 0 failed call(s).\n"
    )

    # Purge: only older failures, then all
    assert rqsignals("purge", "--older-than", "7d") == "Purged 0 failed job(s).\n"
    assert rqsignals("purge", "--yes") == "Purged 1 failed job(s).\n"
    assert connection.exists(f"rq:job:{failed_job_id}") == 0


def test_requeue_all_puts_every_failed_call_back(failed_job_id, connection):
    assert rqsignals("requeue", "--all") == "Requeued 1 failed call(s).\n"

    assert connection.lrange("rq:queue:default", 0, -1) == [failed_job_id.encode()]


BAD_IDS = ["*", "a b", "x:y"]


def test_jobs_with_ids_rq_refuses_fail_and_the_commands_skip_them_naming_each(
    failed_job_id, run_worker, connection
):
    # Given jobs pushed past the app under ids rq would not accept, each with a job hash (a copy of
    # a proper one), which a real worker fails under its raw id
    proper = connection.hgetall(f"rq:job:{failed_job_id}")
    for job_id in BAD_IDS:
        connection.hset(f"rq:job:{job_id}", mapping=proper)
        connection.rpush("rq:queue:default", job_id)
    run_worker()
    failed = {member.decode() for member in connection.zrange("rq:failed:default", 0, -1)}
    assert failed == {failed_job_id, *BAD_IDS}

    # When the operator lists the failures
    warnings = StringIO()
    listing = rqsignals("failures", stderr=warnings)
    # Then the proper failure is listed, and each bad entry is named in a warning, not an abort
    assert f"{failed_job_id}  default  tests.receivers.always_fails" in listing
    assert listing.endswith("1 failed call(s).\n")
    for job_id in BAD_IDS:
        assert f"Job {job_id!r}: in the failed registry of 'default', but not a job id rq accepts" in (
            warnings.getvalue()
        )
    # ... one of them asked for by id is refused with a reason, not rq's bare validation error
    with pytest.raises(CommandError, match=r"Job '\*': .* cannot be requeued; purge removes it"):
        rqsignals("requeue", "*")
    # ... requeue --all puts the proper one back and goes on past the rest
    warnings = StringIO()
    assert rqsignals("requeue", "--all", stderr=warnings) == "Requeued 1 failed call(s).\n"
    assert "Job 'a b': in the failed registry of 'default'" in warnings.getvalue()
    assert connection.lrange("rq:queue:default", 0, -1) == [failed_job_id.encode()]
    # ... and purge removes the bad entries, naming each
    warnings = StringIO()
    assert rqsignals("purge", "--yes", stderr=warnings) == f"Purged {len(BAD_IDS)} failed job(s).\n"
    assert "Job 'x:y': in the failed registry of 'default'" in warnings.getvalue()
    assert "removed from the registry" in warnings.getvalue()
    assert connection.zcard("rq:failed:default") == 0


def test_list_shows_each_receiver_with_signal_sender_queue_and_policy():
    listing = rqsignals("list")

    assert (
        "tests.receivers.record_invoice\n  signal: post_save  sender: testapp.Invoice  queue: high  "
        "enqueued: after commit\n  retry: 5 retries, 1s x2 up to 600s, jitter full (default)\n"
    ) in listing
    assert (
        "tests.receivers.record_invoice_deleted\n  signal: post_delete  sender: testapp.Invoice  queue: low"
        in listing
    )
    assert "signal: tests.receivers.invoice_noted, tests.receivers.invoice_flagged  sender: any" in listing
    assert "queue: default (default)  enqueued: at once\n  retry: no retries" in listing


def test_bad_input_is_a_command_error_naming_it():
    with pytest.raises(CommandError, match="Job no-such-job: not in the failed registry"):
        rqsignals("requeue", "no-such-job")
    with pytest.raises(CommandError, match="'fortnight' is not an age"):
        rqsignals("purge", "--older-than", "fortnight")
    with pytest.raises(CommandError, match="queue 'hihg' is not in RQ_QUEUES"):
        rqsignals("failures", "--queue", "hihg")


@pytest.mark.parametrize(
    ("action", "mentions"),
    [
        ("list", "signal, sender, queue and retry policy"),
        ("failures", "--receiver"),
        ("requeue", "--all"),
        ("purge", "--older-than AGE"),
    ],
)
def test_each_action_has_help(action, mentions, capsys):
    parser = Command().create_parser("manage.py", "rqsignals")

    with pytest.raises(SystemExit):
        parser.parse_args([action, "--help"])

    assert mentions in capsys.readouterr().out


def test_a_zlib_bomb_in_the_failed_registry_is_listed_without_decompressing_it(failed_job_id, connection):
    # Given a failed job whose stored data was replaced by a zlib bomb (300 MB once decompressed)
    connection.hset(f"rq:job:{failed_job_id}", "data", zlib_bomb(300 * 1024 * 1024))

    # When the operator lists the failures, this process's memory watched
    with PeakRss() as rss:
        baseline = rss.process.memory_info().rss
        listing = rqsignals("failures")

    # Then the listing completes without decompressing the bomb (the job's receiver is unreadable,
    # so it is not listed as a receiver call), and memory stays bounded
    assert listing.endswith("0 failed call(s).\n"), listing
    assert rss.peak - baseline < 50 * 2**20, f"grew {(rss.peak - baseline) / 2**20:.0f} MiB"


def test_a_zlib_bomb_as_a_failure_result_is_listed_as_a_short_note(failed_job_id, connection):
    # Given a failed job with no attempt history whose latest result's failure text someone replaced
    # by a zlib bomb (300 MB once decompressed), as rq writes results (the job's result stream)
    connection.hdel(f"rq:job:{failed_job_id}", "meta")
    bomb = base64.b64encode(zlib_bomb(300 * 1024 * 1024))
    connection.xadd(f"rq:results:{failed_job_id}", {"type": 2, "worker_name": "w", "exc_string": bomb})

    # When the operator lists the failures, this process's memory watched
    with PeakRss() as rss:
        baseline = rss.process.memory_info().rss
        listing = rqsignals("failures")
    print(
        f"rqsignals failures: RSS grew {(rss.peak - baseline) / 2**20:.1f} MiB, printed {len(listing)} chars"
    )

    # Then the job is listed with a short note naming the limit, and memory stays bounded
    assert "(failure text over 1048576 bytes; not loaded)" in listing, listing[:2000]
    assert len(listing) < 10_000
    assert rss.peak - baseline < 50 * 2**20, f"grew {(rss.peak - baseline) / 2**20:.0f} MiB"
