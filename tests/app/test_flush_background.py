"""``RQ_SIGNALS["FLUSH"] = "background"``: committed jobs reach Redis from a writer thread, and none is lost.

The writer thread is real, and so is Redis (the session's private server); to hold the writer
back the tests pause Redis's writes (``CLIENT PAUSE ... WRITE``) instead of mocking anything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connections, transaction
from django.dispatch import Signal
from django.test import override_settings

from rq_signals import flush_jobs
from rq_signals.exceptions import SerializationError
from rq_signals.models import OutboxEntry
from rq_signals.relay import relay_once
from tests.receivers import invoice_paid
from tests.support.processes import REPO_ROOT, Proc
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice

pytestmark = pytest.mark.django_db(transaction=True)

BACKGROUND = {"FLUSH": "background"}
QUEUE_NAMES = ("high", "default", "low")
invoice_relayed = Signal()


def save_invoice(sender: str, reference: str, **kwargs: object) -> None:
    """A receiver whose own save has an async receiver (record_invoice): jobs that send jobs."""
    Invoice.objects.create(reference=reference)


JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(autouse=True)
def nothing_left_pending(fresh_queues: None) -> Iterator[None]:
    """Every test hands its jobs over before the next test (and before our queues are reset)."""
    yield
    assert flush_jobs(timeout=30), "the writer thread still had jobs 30s after the test"


def queued(connection: redis.Redis) -> Counter[str]:
    """Every job id waiting on our queues, with how many times it is there."""
    return Counter(
        raw.decode() for name in QUEUE_NAMES for raw in connection.lrange(f"rq:queue:{name}", 0, -1)
    )


def description(connection: redis.Redis, job_id: str) -> str:
    """What the django-rq admin shows of a job (plain text in its hash, whatever the serializer)."""
    return connection.hget(f"rq:job:{job_id}", "description").decode()


def receivers_queued(connection: redis.Redis) -> list[str]:
    return sorted(description(connection, job_id).split(" → ")[1] for job_id in queued(connection))


def outbox_ids() -> set[str]:
    return set(OutboxEntry.objects.values_list("job_id", flat=True))


def checkout(reference: str) -> Invoice:
    """One transaction: an invoice saved and paid (record_invoice, record_payment, email_receipt)."""
    with transaction.atomic():
        invoice = Invoice.objects.create(reference=reference, total="9.90")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=9)
    return invoice


def pause_writes(connection: redis.Redis, seconds: float) -> None:
    """Redis holds every write command (ours included) for `seconds`; reads still answer."""
    connection.client_pause(int(seconds * 1000), all=False)


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_committed_jobs_reach_redis_on_their_own_and_a_worker_runs_them(connection, run_worker):
    # Given a checkout committed in background mode
    invoice = checkout("INV-bg-1")

    # Then its three jobs reach Redis without anyone waiting for them
    wait_until(lambda: sum(queued(connection).values()) == 3, timeout=10, what="the writer to push 3 jobs")
    assert receivers_queued(connection) == [
        "tests.receivers.email_receipt",
        "tests.receivers.record_invoice",
        "tests.receivers.record_payment",
    ]

    # And a real worker runs them
    run_worker()
    assert Effect.objects.get(receiver="record_invoice").key == str(invoice.pk)
    assert Effect.objects.get(receiver="record_payment").value["amount"] == "9"


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_a_save_in_autocommit_is_handed_to_the_writer_too(connection):
    pause_writes(connection, 1.0)

    Invoice.objects.create(reference="INV-autocommit")

    assert queued(connection) == Counter()  # create() returned before Redis took the job
    assert flush_jobs(timeout=10)
    assert receivers_queued(connection) == ["tests.receivers.record_invoice"]


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_a_rolled_back_transaction_hands_nothing_over(connection):
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-declined")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=1)
        raise RuntimeError("card declined")

    assert flush_jobs(timeout=10)
    assert connection.keys("rq:*") == []
    assert outbox_ids() == set()


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_an_argument_that_cannot_be_sent_still_fails_in_the_sender():
    with (
        pytest.raises(SerializationError, match="record_payment got argument 'amount'"),
        transaction.atomic(),
    ):
        invoice = Invoice.objects.create(reference="INV-bad")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=object())


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_flush_jobs_waits_until_the_writer_has_written_everything(connection):
    # Given Redis holds writes for a second while two checkouts commit
    pause_writes(connection, 1.0)
    checkout("INV-wait-1")
    checkout("INV-wait-2")
    assert queued(connection) == Counter()

    # When the process waits for its jobs
    assert flush_jobs(timeout=10) is True

    # Then all six are in Redis the moment it returns, each once
    assert sorted(queued(connection).values()) == [1] * 6


def test_flush_jobs_in_commit_mode_has_nothing_to_wait_for(connection):
    checkout("INV-commit")

    assert flush_jobs(timeout=0) is True
    assert sum(queued(connection).values()) == 3


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_flush_jobs_timing_out_names_the_jobs_left_and_keeps_the_untaken_ones_in_the_outbox(
    connection, caplog
):
    # Given Redis holds writes while two checkouts commit
    pause_writes(connection, 5.0)
    checkout("INV-slow-1")
    checkout("INV-slow-2")

    # When the process waits for less time than that
    with caplog.at_level(logging.WARNING, logger="rq_signals"):
        assert flush_jobs(timeout=0.2) is False

    # Then every job id left is named in a warning
    named = set(
        JOB_ID.findall(" ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING))
    )
    assert len(named) == 6

    # And once Redis answers, each job is in Redis (the writer had taken it) or in the outbox, not both
    connection.client_unpause()
    assert flush_jobs(timeout=10)
    in_redis, in_outbox = set(queued(connection)), outbox_ids()
    assert in_redis | in_outbox == named
    assert not in_redis & in_outbox
    assert sorted(queued(connection).values()) == [1] * len(in_redis)


@override_settings(RQ_SIGNALS={**BACKGROUND, "OUTBOX": "off"})
def test_outbox_off_flush_jobs_timing_out_leaves_the_jobs_with_the_writer(connection, caplog):
    # Given Redis holds writes while two checkouts commit, with no outbox to fall back on
    pause_writes(connection, 5.0)
    checkout("INV-off-1")
    checkout("INV-off-2")

    # When the process gives up waiting early
    with caplog.at_level(logging.WARNING, logger="rq_signals"):
        assert flush_jobs(timeout=0.2) is False

    # Then the warning names every job as still with the writer, and the writer still writes them all
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "still with the writer thread" in warning.getMessage()
    assert len(set(JOB_ID.findall(warning.getMessage()))) == 6
    connection.client_unpause()
    assert flush_jobs(timeout=10)
    assert sorted(queued(connection).values()) == [1] * 6
    assert outbox_ids() == set()


@override_settings(RQ_SIGNALS=BACKGROUND)
def test_redis_down_after_commit_keeps_the_jobs_in_the_outbox_and_the_request_succeeds(redis_server, caplog):
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="rq_signals"):
            checkout("INV-outage")  # no exception: the writer, not the request, meets the outage
            assert flush_jobs(timeout=10)

        waiting = outbox_ids()
        assert len(waiting) == 3
        assert OutboxEntry.objects.filter(receiver="tests.receivers.record_payment").exists()
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.threadName == "rq-signals-flush"
        assert "ConnectionError" in warning.getMessage()
        assert all(job_id in warning.getMessage() for job_id in waiting)
    finally:
        redis_server.start()


@override_settings(RQ_SIGNALS={**BACKGROUND, "OUTBOX": "off"})
def test_outbox_off_redis_down_logs_an_error_naming_the_lost_jobs_and_the_request_succeeds(
    redis_server, caplog
):
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="rq_signals"):
            Invoice.objects.create(reference="INV-lost")
            assert flush_jobs(timeout=10)
    finally:
        redis_server.start()

    assert OutboxEntry.objects.count() == 0
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = error.getMessage()
    assert message.startswith("Receivers tests.receivers.record_invoice: Redis did not take 1 job(s)")
    assert '"OUTBOX"] is "off": lost: ' in message
    assert JOB_ID.search(message)


@override_settings(RQ_SIGNALS={**BACKGROUND, "OUTBOX": "always"})
def test_outbox_always_rows_are_written_in_the_transaction_and_the_writer_delivers_them(connection):
    pause_writes(connection, 1.0)
    with transaction.atomic():
        Invoice.objects.create(reference="INV-always")
        written = outbox_ids()
    assert len(written) == 1  # written inside the transaction, committed with the invoice

    assert flush_jobs(timeout=10)

    assert queued(connection) == Counter(dict.fromkeys(written, 1))
    assert outbox_ids() == set()


@override_settings(RQ_SIGNALS={**BACKGROUND, "EAGER": True})
def test_eager_mode_still_runs_receivers_inline_at_commit():
    with transaction.atomic():
        Invoice.objects.create(reference="INV-eager")
        assert not Effect.objects.exists()

    assert Effect.objects.filter(receiver="record_invoice").count() == 1


SUBPROCESS_EXITS_AFTER_COMMIT = """
import os
import redis
from django.db import transaction
from django.test import override_settings
from tests.testapp.models import Invoice

with override_settings(RQ_SIGNALS={"FLUSH": "background"}):
    redis.Redis.from_url(os.environ["RQ_SIGNALS_TEST_REDIS_URL"]).client_pause(500, all=False)
    for n in range(20):
        with transaction.atomic():
            Invoice.objects.create(reference=f"INV-exit-{n}")
print("committed 20, exiting", flush=True)
"""


def django_shell(script: str, redis_url: str, log_path: Path) -> Proc:
    """`tests/manage.py shell -c script` as a subprocess on the test database and `redis_url`."""
    return Proc(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "shell", "-c", script],
        env={
            "RQ_SIGNALS_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),
            "RQ_SIGNALS_TEST_REDIS_URL": redis_url,
        },
        log_path=log_path,
    )


def test_a_process_that_exits_normally_leaves_every_committed_job_in_redis(connection, redis_url, tmp_path):
    # When a process commits 20 transactions in background mode while Redis holds writes, then exits
    proc = django_shell(SUBPROCESS_EXITS_AFTER_COMMIT, redis_url, tmp_path / "exit.log")
    code, output = proc.wait(60), proc.log_path.read_text()
    assert code == 0, output[-2000:]
    assert "committed 20, exiting" in output

    # Then its exit waited for the writer: every job is in Redis, once
    assert Invoice.objects.count() == 20
    jobs = queued(connection)
    assert len(jobs) == 20 and set(jobs.values()) == {1}
    descriptions = sorted(description(connection, job_id) for job_id in jobs)
    assert descriptions == sorted(
        f"post_save testapp.Invoice pk={pk} → tests.receivers.record_invoice"
        for pk in Invoice.objects.values_list("pk", flat=True)
    )
    assert OutboxEntry.objects.count() == 0


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python 3.12+
@override_settings(RQ_SIGNALS=BACKGROUND)
def test_a_forked_child_does_not_inherit_the_parents_pending_jobs(connection):
    # Given two checkouts whose jobs are still pending in this process (Redis holds writes)
    pause_writes(connection, 5.0)
    invoices = [checkout("INV-parent-1"), checkout("INV-parent-2")]

    # When the process forks, and the child sends one signal of its own and waits for its jobs
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            invoice_paid.send(sender="child", invoice=invoices[0], amount=2)  # autocommit: its own writer
            code = 0 if flush_jobs(timeout=20) else 2
        finally:
            os._exit(code)
    connection.client_unpause()
    assert flush_jobs(timeout=10)
    status = _wait_for_child(pid)

    # Then the child wrote only its own two jobs, the parent its six: nothing twice
    assert status == 0
    jobs = queued(connection)
    assert len(jobs) == 8 and set(jobs.values()) == {1}
    senders = Counter(description(connection, job_id).split(" → ")[0] for job_id in jobs)
    assert senders["tests.receivers.invoice_paid sender='child'"] == 2
    assert senders["tests.receivers.invoice_paid sender='checkout'"] == 4


def _wait_for_child(pid: int) -> int:
    """The exit code of child `pid`, waited for at most 30 seconds."""
    found: list[int] = []

    def exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            found.append(os.waitstatus_to_exitcode(status))
        return bool(done)

    wait_until(exited, timeout=30, what=f"the forked child {pid} to exit")
    return found[0]


HORSE = """
import os
import redis
from django.test import override_settings
from rq_signals import async_receiver, registration
from rq_signals.jobs import run_receiver
from rq_signals.payload import encode_arguments
from tests.app.test_flush_background import invoice_relayed, save_invoice

async_receiver(invoice_relayed)(save_invoice)
receiver_id = "tests.app.test_flush_background.save_invoice"
ref = registration.lookup(receiver_id).signals[0]
payload = encode_arguments(
    {"sender": "horse", "reference": "INV-horse"}, signal_name=ref.name, receiver_path=receiver_id
)
with override_settings(RQ_SIGNALS={"FLUSH": "background"}):
    redis.Redis.from_url(os.environ["RQ_SIGNALS_TEST_REDIS_URL"]).client_pause(500, all=False)
    run_receiver(receiver_id, ref.path, payload)
    print("job done, leaving as a work horse does", flush=True)
    os._exit(0)  # what rq's work horse does after its job: no atexit
"""


def test_a_job_whose_receiver_commits_leaves_its_jobs_in_redis_before_a_work_horse_exits(
    connection, redis_url, tmp_path
):
    # When a job's receiver saves an invoice in background mode, in a process that then leaves
    # with os._exit() (rq's work horse) while Redis holds writes
    proc = django_shell(HORSE, redis_url, tmp_path / "horse.log")
    code, output = proc.wait(60), proc.log_path.read_text()
    assert code == 0 and "job done" in output, output[-2000:]

    # Then the invoice's own job reached Redis before the job ended
    invoice = Invoice.objects.get(reference="INV-horse")
    [job_id] = queued(connection)
    assert description(connection, job_id) == (
        f"post_save testapp.Invoice pk={invoice.pk} → tests.receivers.record_invoice"
    )


KILLED_AFTER_COMMIT = """
import os
import signal
from django.db import transaction
from django.test import override_settings
from tests.testapp.models import Invoice

with override_settings(RQ_SIGNALS={"FLUSH": "background", "OUTBOX": "always"}):
    with transaction.atomic():
        Invoice.objects.create(reference="INV-killed")
        # runs right after ours: the job is handed to the writer, which has not written it yet
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_with_outbox_always_a_process_killed_after_commit_loses_nothing(connection, redis_url, tmp_path):
    # When a process commits in background mode with OUTBOX="always" and is killed (SIGKILL) at once
    proc = django_shell(KILLED_AFTER_COMMIT, redis_url, tmp_path / "killed.log")
    assert proc.wait(60) == -9, proc.log_path.read_text()[-2000:]
    invoice = Invoice.objects.get(reference="INV-killed")

    # Then the job's outbox row, committed with the invoice, lets the relay enqueue it, once
    relay_once(using="default")
    [job_id] = queued(connection)
    assert description(connection, job_id).startswith(f"post_save testapp.Invoice pk={invoice.pk} ")
    assert outbox_ids() == set()
