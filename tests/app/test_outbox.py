"""Nothing lost when Redis is down at commit: jobs wait in the database outbox, a relay enqueues each once."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save
from django.test import override_settings
from django.utils import timezone
from rq.job import Job

from rq_signals import outbox, queues, relay
from rq_signals.models import OutboxEntry
from rq_signals.outbox import OutboxJob
from rq_signals.relay import relay_once
from tests.receivers import invoice_paid
from tests.support.processes import REPO_ROOT, Proc
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice
from worker import SimpleRetryWorker
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

QUEUE_NAMES = ("high", "default", "low")


class RelayingWorker(SimpleRetryWorker):
    """A worker that runs the maintenance chores, the outbox relay among them (for the end-to-end story)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        relay.register_relay()  # what RqSignalsConfig.ready() does once wired; registering twice is harmless
        super().__init__(*args, **kwargs)


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


def queued_ids(server: RedisServer) -> Counter[str]:
    """Every job id waiting on our queues, with how many times it is there."""
    conn = redis.Redis.from_url(server.url)
    try:
        return Counter(raw.decode() for name in QUEUE_NAMES for raw in conn.lrange(f"rq:queue:{name}", 0, -1))
    finally:
        conn.close()


def outbox_ids() -> set[str]:
    return set(OutboxEntry.objects.values_list("job_id", flat=True))


def place_orders(count: int) -> None:
    """A checkout: `count` invoices saved and one paid, in one transaction (count + 2 jobs)."""
    with transaction.atomic():
        invoices = [Invoice.objects.create(reference=f"INV-{n}", total=n) for n in range(count)]
        invoice_paid.send(sender="checkout", invoice=invoices[0], amount=3)


def test_orders_committed_while_redis_is_down_are_relayed_once_each_when_it_is_back(shop_redis, caplog):
    # Given Redis is down
    shop_redis.stop()

    # When a checkout commits five invoices (and a payment)
    with caplog.at_level(logging.WARNING, logger="rq_signals"):
        place_orders(5)

    # Then the request saw no error, every invoice is committed, and its jobs wait in the outbox...
    assert Invoice.objects.count() == 5
    waiting = outbox_ids()
    assert len(waiting) == 7  # five record_invoice, record_payment and email_receipt
    # ...with a warning naming the receivers and every job id
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert message.startswith("Receivers tests.receivers.email_receipt, tests.receivers.record_invoice, ")
    assert "ConnectionError" in message
    assert all(job_id in message for job_id in waiting)

    # When Redis is back and the relay runs
    shop_redis.start()
    report = relay_once()

    # Then every job is on its queue exactly once, and the outbox is empty
    assert sorted(report.enqueued) == sorted(waiting)
    assert report.ok
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))
    assert outbox_ids() == set()

    # And a second pass has nothing to do
    assert relay_once().enqueued == []
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))


def test_a_relayed_job_is_the_job_the_commit_would_have_enqueued(shop_redis):
    shop_redis.stop()
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-9")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=3)
    rows = {row.receiver: row.job_id for row in OutboxEntry.objects.all()}

    shop_redis.start()
    relay_once()

    conn = redis.Redis.from_url(shop_redis.url)
    payment = Job.fetch(rows["tests.receivers.record_payment"], connection=conn, serializer=JSONSerializer)
    assert payment.func_name == "rq_signals.jobs.run_receiver"
    assert tuple(payment.args[:2]) == ("tests.receivers.record_payment", "tests.receivers.invoice_paid")
    assert payment.origin == "default"
    assert payment.timeout == 30
    assert (
        payment.description
        == "tests.receivers.invoice_paid sender='checkout' → tests.receivers.record_payment"
    )
    assert payment.meta["retry_policy"]["max_retries"] == 5
    saved = Job.fetch(rows["tests.receivers.record_invoice"], connection=conn, serializer=JSONSerializer)
    assert (saved.origin, saved.args[2]["kwargs"]["created"]) == ("high", True)
    assert saved.description == f"post_save testapp.Invoice pk={invoice.pk} → tests.receivers.record_invoice"
    conn.close()


def test_a_save_outside_any_transaction_while_redis_is_down_waits_in_the_outbox_too(shop_redis):
    shop_redis.stop()

    Invoice.objects.create(reference="INV-autocommit")

    [row] = OutboxEntry.objects.all()
    assert (row.receiver, row.queue) == ("tests.receivers.record_invoice", "high")


def test_a_relay_while_redis_is_still_down_keeps_the_rows_and_says_why(shop_redis):
    shop_redis.stop()
    place_orders(2)

    report = relay_once()

    assert not report.ok
    assert report.enqueued == []
    assert report.waiting == {"default": 4}
    assert "ConnectionError" in report.errors["default"]
    assert "4 job(s) wait in database 'default'" in str(report)
    assert {(row.attempts, "ConnectionError" in row.last_error) for row in OutboxEntry.objects.all()} == {
        (1, True)
    }
    with pytest.raises(CommandError, match=r"4 job\(s\) wait in database 'default'.*ConnectionError"):
        call_command("rqsignals", "relay", "--once", stdout=io.StringIO())
    assert OutboxEntry.objects.count() == 4


def test_manage_py_rqsignals_relay_once_drains_the_outbox(shop_redis):
    shop_redis.stop()
    place_orders(3)
    waiting = outbox_ids()
    shop_redis.start()

    out = io.StringIO()
    call_command("rqsignals", "relay", "--once", stdout=out)

    assert "Outbox: relayed 5 job(s), 0 already in Redis" in out.getvalue()
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))
    assert outbox_ids() == set()


def test_two_relays_at_once_enqueue_each_job_once(shop_redis):
    # Given 250 invoices committed while Redis was down (more than two relay batches)
    shop_redis.stop()
    place_orders(250)
    waiting = outbox_ids()
    shop_redis.start()

    # When two relays drain the outbox at the same time
    start = threading.Barrier(2, timeout=10)
    reports: list[relay.RelayReport] = []

    def drain() -> None:
        try:
            start.wait()
            reports.append(relay_once(batch_size=20))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a relay did not finish within 60s"

    # Then each job was enqueued once, by one of them
    assert len(reports) == 2 and all(report.ok for report in reports)
    enqueued = reports[0].enqueued + reports[1].enqueued
    assert sorted(enqueued) == sorted(waiting)
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))
    assert outbox_ids() == set()


def test_the_redis_guard_enqueues_a_job_id_once_whoever_races_for_it(shop_redis):
    # Given the same 50 jobs handed to four relays at once (as if every database claim had failed)
    shop_redis.stop()
    place_orders(48)
    jobs = [OutboxJob.from_json(row.data) for row in OutboxEntry.objects.all()]
    shop_redis.start()
    start = threading.Barrier(4, timeout=10)
    results: list[outbox.Sent] = []

    def race() -> None:
        start.wait()
        results.append(outbox.enqueue_once(jobs))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then each job is on its queue once; the other relays found it there
    assert len(results) == 4
    assert not any(sent.failed for sent in results)
    assert sorted(job_id for sent in results for job_id in sent.enqueued) == sorted(
        job.job_id for job in jobs
    )
    assert queued_ids(shop_redis) == Counter({job.job_id: 1 for job in jobs})
    conn = redis.Redis.from_url(shop_redis.url)
    assert 0 < conn.ttl(outbox.marker_key(jobs[0].job_id)) <= 7 * 24 * 3600
    conn.close()


def test_a_job_redis_already_has_is_not_enqueued_again_and_its_row_goes(shop_redis):
    # Given a job that reached Redis, though its outbox row stayed (a relay died before deleting it)
    shop_redis.stop()
    place_orders(1)
    shop_redis.start()
    rows = list(OutboxEntry.objects.values_list("data", flat=True))
    relay_once()
    OutboxEntry.objects.bulk_create(
        OutboxEntry(
            job_id=job.job_id,
            queue=job.queue,
            receiver=job.receiver,
            data=job.to_json(),
            created_at=timezone.now(),
        )
        for job in map(OutboxJob.from_json, rows)
    )
    before = queued_ids(shop_redis)

    report = relay_once()

    assert report.enqueued == [] and sorted(report.already_there) == sorted(before)
    assert queued_ids(shop_redis) == before
    assert outbox_ids() == set()


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_always_a_rolled_back_transaction_leaves_nothing_anywhere(shop_redis):
    with pytest.raises(RuntimeError), transaction.atomic():
        Invoice.objects.create(reference="INV-rolled-back")
        assert OutboxEntry.objects.count() == 1  # written inside the transaction
        raise RuntimeError("payment declined")

    assert OutboxEntry.objects.count() == 0
    assert queued_ids(shop_redis) == Counter()


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_always_a_committed_transaction_is_enqueued_once_and_its_rows_deleted(shop_redis):
    with transaction.atomic():
        kept = Invoice.objects.create(reference="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Invoice.objects.create(reference="dropped")
            raise RuntimeError("inner step failed")
        written = outbox_ids()

    assert len(written) == 1
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(written, 1))
    assert outbox_ids() == set()
    conn = redis.Redis.from_url(shop_redis.url)
    [job_id] = written
    assert Job.fetch(job_id, connection=conn, serializer=JSONSerializer).description.startswith(
        f"post_save testapp.Invoice pk={kept.pk} "
    )
    conn.close()


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_always_with_redis_down_the_rows_written_in_the_transaction_wait(shop_redis, caplog):
    shop_redis.stop()
    with caplog.at_level(logging.WARNING, logger="rq_signals"):
        place_orders(2)
    waiting = outbox_ids()
    assert len(waiting) == 4
    assert all(job_id in caplog.text for job_id in waiting)

    shop_redis.start()
    assert sorted(relay_once().enqueued) == sorted(waiting)
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))


@override_settings(RQ_SIGNALS={"OUTBOX": "off"})
def test_outbox_off_redis_down_at_commit_is_an_error_and_nothing_is_kept(shop_redis):
    shop_redis.stop()

    with pytest.raises(redis.ConnectionError), transaction.atomic():
        Invoice.objects.create(reference="INV-lost")

    assert OutboxEntry.objects.count() == 0


def test_a_worker_relays_the_outbox_then_runs_the_receivers(redis_server, run_worker):
    # Given the session's Redis (the one the worker subprocess uses) is down during a checkout
    redis_server.stop()
    place_orders(2)
    assert OutboxEntry.objects.count() == 4
    redis_server.start()
    queues.reset()

    # When a worker starts (burst): its maintenance runs the relay before its first job
    log = run_worker("--worker-class", "tests.app.test_outbox.RelayingWorker")

    # Then the receivers ran once per job, and the outbox is empty
    assert OutboxEntry.objects.count() == 0
    assert sorted(Effect.objects.values_list("receiver", flat=True)) == [
        "record_invoice",
        "record_invoice",
        "record_payment",
    ]
    assert "Traceback" not in log


def test_after_a_rolled_back_outbox_always_transaction_the_next_commit_still_keeps_its_jobs(shop_redis):
    # Given OUTBOX="always" for a transaction that rolled back
    with (
        override_settings(RQ_SIGNALS={"OUTBOX": "always"}),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        Invoice.objects.create(reference="INV-rolled-back")
        raise RuntimeError("payment declined")

    # When the default ("on_failure") is back and Redis is down at the next commit
    shop_redis.stop()
    place_orders(1)

    # Then that commit's jobs are in the outbox
    assert len(outbox_ids()) == 3


def test_jobs_wait_in_the_outbox_of_the_database_that_committed_them(shop_redis):
    # Given Redis is down while one transaction commits on "default" and another on "other"
    shop_redis.stop()
    with transaction.atomic(using="other"):
        Invoice.objects.using("other").create(reference="O-1")
    Invoice.objects.create(reference="D-1")

    # Then each database keeps its own job, committed or rolled back with its own rows
    assert OutboxEntry.objects.using("other").count() == 1
    assert OutboxEntry.objects.using("default").count() == 1

    # And one relay pass drains both
    shop_redis.start()
    report = relay_once()
    assert len(report.enqueued) == 2 and report.ok
    assert OutboxEntry.objects.using("other").count() == OutboxEntry.objects.count() == 0
    assert sum(queued_ids(shop_redis).values()) == 2


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_always_rows_live_in_the_sending_database_and_roll_back_with_it(shop_redis):
    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        Invoice.objects.using("other").create(reference="O-rolled-back")
        assert OutboxEntry.objects.using("other").count() == 1
        assert OutboxEntry.objects.using("default").count() == 0
        raise RuntimeError("rolled back on other")

    assert OutboxEntry.objects.using("other").count() == 0
    assert queued_ids(shop_redis) == Counter()


def test_two_relay_commands_in_separate_processes_enqueue_each_job_once(shop_redis, tmp_path):
    # Given 250 jobs committed while Redis was down
    shop_redis.stop()
    place_orders(248)
    waiting = outbox_ids()
    shop_redis.start()

    # When two `manage.py rqsignals relay --once` processes start together
    env = {
        "RQ_SIGNALS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),  # PostgreSQL
        "RQ_SIGNALS_TEST_REDIS_URL": shop_redis.url,  # tests/settings.py points RQ_QUEUES at it
    }
    relays = [
        Proc(
            [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqsignals", "relay", "--once"],
            env=env,
            log_path=tmp_path / f"relay-{n}.log",
        )
        for n in range(2)
    ]
    codes = [proc.wait(60) for proc in relays]

    # Then both succeeded, and each job is on its queue once
    assert codes == [0, 0], [proc.output()[-2000:] for proc in relays]
    assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))
    assert outbox_ids() == set()


def test_the_relay_command_keeps_trying_while_redis_is_down_and_drains_once_it_answers(shop_redis, tmp_path):
    # Given jobs in the outbox and Redis still down
    shop_redis.stop()
    place_orders(1)
    waiting = outbox_ids()

    # When `manage.py rqsignals relay --interval 0.2` runs, and Redis comes back a little later
    loop = Proc(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "rqsignals", "relay", "--interval", "0.2"],
        env={
            "RQ_SIGNALS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),
            "RQ_SIGNALS_TEST_REDIS_URL": shop_redis.url,
        },
        log_path=tmp_path / "relay-loop.log",
    )
    try:
        wait_until(
            lambda: OutboxEntry.objects.filter(attempts__gte=2).count() == len(waiting),
            timeout=30,
            what="the relay loop to try (and fail) twice while Redis is down",
        )
        shop_redis.start()

        # Then it enqueues every job once and empties the outbox, and says so
        wait_until(lambda: not outbox_ids(), timeout=30, what="the relay loop to drain the outbox")
        assert queued_ids(shop_redis) == Counter(dict.fromkeys(waiting, 1))
        wait_until(lambda: "Outbox: relayed 3 job(s)" in loop.output(), timeout=10, what="the loop's report")
        assert loop.alive()
    finally:
        loop.stop()


def test_a_redis_server_still_down_holds_back_only_its_own_queues_jobs(shop_redis):
    # Given the "low" queue lives on a second Redis server, and both servers are down at commit
    low_redis = RedisServer().start()
    rq_queues = {name: {"URL": shop_redis.url, "DEFAULT_TIMEOUT": 60} for name in QUEUE_NAMES}
    rq_queues["low"] = {"URL": low_redis.url, "DEFAULT_TIMEOUT": 60}
    try:
        with override_settings(RQ_QUEUES=rq_queues):
            shop_redis.stop()
            low_redis.stop()
            place_orders(1)  # record_invoice (high), record_payment (default), email_receipt (low)
            rows = {row.receiver: row.job_id for row in OutboxEntry.objects.all()}

            # When only the first server comes back
            shop_redis.start()
            report = relay_once()

            # Then its jobs are enqueued, and the low queue's job waits, saying why
            assert sorted(report.enqueued) == sorted(
                [rows["tests.receivers.record_invoice"], rows["tests.receivers.record_payment"]]
            )
            assert report.waiting == {"default": 1}
            [left] = OutboxEntry.objects.all()
            assert left.job_id == rows["tests.receivers.email_receipt"]
            assert left.attempts == 1 and left.last_error.startswith("ConnectionError: ")
            assert f"{low_redis.port}" in left.last_error

            # And once the second server is back, the next pass sends it
            low_redis.start()
            assert relay_once().enqueued == [left.job_id]
            assert outbox_ids() == set()
    finally:
        low_redis.cleanup()


@pytest.mark.parametrize(
    ("queue", "data", "reason"),
    [
        ("gone", None, "queue 'gone' is not in RQ_QUEUES"),
        ("high", "{not json", "is not a job (JSONDecodeError"),
    ],
)
def test_a_row_the_relay_cannot_send_stays_with_the_reason(shop_redis, queue, data, reason):
    # Given a row naming a queue removed from RQ_QUEUES (or garbled), beside a good one
    shop_redis.stop()
    place_orders(1)
    good = outbox_ids()
    job = OutboxJob("bad-job-1", queue, "rq_signals.jobs.run_receiver", ("tests.receivers.x",), "", {}, None)
    OutboxEntry.objects.create(
        job_id=job.job_id,
        queue=queue,
        receiver="tests.receivers.x",
        data=data or job.to_json(),
        created_at=timezone.now(),
    )
    shop_redis.start()

    report = relay_once()

    # Then the good jobs go, the bad row stays with its reason, and the pass says it is not clean
    assert sorted(report.enqueued) == sorted(good)
    assert not report.ok and reason in report.errors["default"]
    [left] = OutboxEntry.objects.all()
    assert left.job_id == "bad-job-1" and reason in left.last_error and left.attempts == 1


@override_settings(RQ_SIGNALS={"OUTBOX": "always"})
def test_outbox_rows_send_no_model_signals(shop_redis):
    # Given a receiver of every post_save and post_delete (as an app's audit log would have)
    seen: list[str] = []

    def spy(sender, **kwargs) -> None:
        seen.append(sender._meta.label)

    post_save.connect(spy, weak=False, dispatch_uid="tests.outbox.spy")
    post_delete.connect(spy, weak=False, dispatch_uid="tests.outbox.spy")
    try:
        # When outbox rows are written, relayed and deleted
        place_orders(1)
        shop_redis.stop()
        place_orders(1)
        shop_redis.start()
        relay_once()
    finally:
        post_save.disconnect(dispatch_uid="tests.outbox.spy")
        post_delete.disconnect(dispatch_uid="tests.outbox.spy")

    # Then only the invoices were seen: the outbox's own bookkeeping is silent
    assert set(seen) == {"testapp.Invoice"}
    assert outbox_ids() == set()


CRASH_AFTER_COMMIT = """
import os
from django.db import transaction
from django.test import override_settings
from tests.testapp.models import Invoice

with override_settings(RQ_SIGNALS={"OUTBOX": os.environ["OUTBOX_MODE"]}):
    with transaction.atomic():
        transaction.on_commit(lambda: os._exit(0))  # runs before the flush: killed between commit and enqueue
        Invoice.objects.create(reference="INV-crash")
"""


@pytest.mark.parametrize(("mode", "kept"), [("always", 1), ("on_failure", 0)])
def test_a_process_killed_between_commit_and_enqueue_loses_nothing_only_with_outbox_always(
    shop_redis, tmp_path, mode, kept
):
    # When a process commits an invoice and dies before its jobs reach Redis
    crash = Proc(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "shell", "-c", CRASH_AFTER_COMMIT],
        env={
            "RQ_SIGNALS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),
            "RQ_SIGNALS_TEST_REDIS_URL": shop_redis.url,
            "OUTBOX_MODE": mode,
        },
        log_path=tmp_path / "crash.log",
    )
    assert crash.wait(60) == 0, crash.output()[-2000:]
    assert Invoice.objects.filter(reference="INV-crash").exists()
    assert queued_ids(shop_redis) == Counter()

    # Then with OUTBOX="always" its job waits in the outbox and the relay sends it once; with the
    # default ("on_failure") the job is lost: the outbox is written only when Redis refuses a job.
    assert OutboxEntry.objects.count() == kept
    assert len(relay_once().enqueued) == kept
    assert sum(queued_ids(shop_redis).values()) == kept


def test_a_running_worker_relays_what_was_committed_during_an_outage(redis_server, tmp_path):
    # Given a worker running (not in burst mode) on the session's Redis
    worker = Proc(
        [
            sys.executable,
            str(REPO_ROOT / "tests" / "manage.py"),
            "rqworker",
            "--worker-class",
            "tests.app.test_outbox.RelayingWorker",
            *QUEUE_NAMES,
        ],
        env={"RQ_SIGNALS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"])},
        log_path=tmp_path / "worker.log",
    )
    try:
        wait_until(lambda: "Listening on" in worker.output(), timeout=30, what="the worker to listen")

        # When Redis goes away while a checkout commits, and comes back
        redis_server.stop()
        place_orders(1)
        assert OutboxEntry.objects.count() == 3
        redis_server.start()

        # Then the worker's maintenance relays the jobs and runs them: nobody had to run a relay
        wait_until(
            lambda: Effect.objects.filter(receiver="record_payment").exists() and not outbox_ids(),
            timeout=60,
            what="the running worker to relay the outbox and run record_payment",
        )
        assert Effect.objects.filter(receiver="record_invoice").count() == 1
    finally:
        worker.stop()
