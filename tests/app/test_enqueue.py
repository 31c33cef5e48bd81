"""Sending a signal enqueues a JSON job after commit, never after a rollback, one round trip a transaction."""

from __future__ import annotations

import asyncio

import pytest
import redis
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.test import RequestFactory, override_settings
from rq.job import Job

from rq_signals import enqueue, queues
from rq_signals.exceptions import SerializationError
from rq_signals.jobs import run_receiver
from tests.receivers import invoice_noted, invoice_paid
from tests.testapp.models import Effect, Invoice, Tag
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)


def jobs_on(connection: redis.Redis, queue: str) -> list[Job]:
    ids = [raw.decode() for raw in connection.lrange(f"rq:queue:{queue}", 0, -1)]
    return [Job.fetch(job_id, connection=connection, serializer=JSONSerializer) for job_id in ids]


def receivers_of(jobs: list[Job]) -> list[str]:
    return [job.args[0] for job in jobs]


def test_a_save_outside_a_transaction_enqueues_a_readable_json_job_at_once(connection):
    invoice = Invoice.objects.create(reference="INV-1", total="12.50")

    [job] = jobs_on(connection, "high")
    receiver_id, signal_path, payload = job.args
    assert (job.func_name, receiver_id, signal_path) == (
        "rq_signals.jobs.run_receiver",
        "tests.receivers.record_invoice",
        "django.db.models.signals.post_save",
    )
    assert payload["kwargs"]["created"] is True
    assert job.description == f"post_save testapp.Invoice pk={invoice.pk} → tests.receivers.record_invoice"
    # The default policy (RQ_SIGNALS["DEFAULT_RETRY"] unset: five retries) travels with the job.
    assert job.meta["retry_policy"]["max_retries"] == 5


def test_jobs_wait_for_commit_and_go_to_each_receivers_queue(connection):
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-2")
        invoice.tags.add(Tag.objects.create(name="urgent"))
        invoice_paid.send(sender="checkout", invoice=invoice, amount=3)
        assert connection.keys("rq:job:*") == []  # nothing before commit

    assert receivers_of(jobs_on(connection, "high")) == ["tests.receivers.record_invoice"]
    assert sorted(receivers_of(jobs_on(connection, "default"))) == [
        "tests.receivers.record_payment",
        "tests.receivers.record_tags",
        "tests.receivers.record_tags",  # pre_add and post_add
    ]
    assert receivers_of(jobs_on(connection, "low")) == ["tests.receivers.email_receipt"]
    [payment] = [job for job in jobs_on(connection, "default") if job.args[0].endswith("record_payment")]
    assert payment.timeout == 30
    assert (
        payment.description
        == "tests.receivers.invoice_paid sender='checkout' → tests.receivers.record_payment"
    )


def test_a_rolled_back_transaction_enqueues_nothing(connection):
    with pytest.raises(RuntimeError), transaction.atomic():
        Invoice.objects.create(reference="INV-3")
        raise RuntimeError("payment declined")

    assert connection.keys("rq:*job*") == []


def test_a_rolled_back_savepoint_drops_only_its_own_jobs(connection):
    with transaction.atomic():
        kept = Invoice.objects.create(reference="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Invoice.objects.create(reference="dropped")
            raise RuntimeError("inner step failed")
        with transaction.atomic():
            also_kept = Invoice.objects.create(reference="also kept")

    jobs = jobs_on(connection, "high")
    assert [job.args[2]["kwargs"]["instance"]["v"]["pk"] for job in jobs] == [kept.pk, also_kept.pk]


def test_a_transaction_whose_last_jobs_were_rolled_back_still_sends_the_others(connection):
    with transaction.atomic():
        kept = Invoice.objects.create(reference="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Invoice.objects.create(reference="dropped")
            raise RuntimeError("last step failed")

    assert [job.args[2]["kwargs"]["instance"]["v"]["pk"] for job in jobs_on(connection, "high")] == [kept.pk]


def test_all_jobs_of_a_transaction_reach_redis_in_one_round_trip(connection, monkeypatch):
    # Given the queues are warm (the first use of a connection asks the server's version once)
    Invoice.objects.create(reference="warm-up")
    round_trips = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        round_trips.append(command)
        return original(self, command, check_health)

    exec_calls_before = _calls(connection)["exec"]
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)

    # When one transaction produces jobs for three queues
    with transaction.atomic():
        for number in range(5):
            invoice = Invoice.objects.create(reference=f"INV-{number}")
        invoice.tags.add(Tag.objects.create(name="bulk"))
        invoice_paid.send(sender="checkout", invoice=invoice, amount=1)

    monkeypatch.undo()
    # Then they were sent in one MULTI/EXEC, one round trip
    assert len(round_trips) == 1
    assert _calls(connection)["exec"] - exec_calls_before == 1
    assert (
        sum(connection.llen(f"rq:queue:{name}") for name in ("high", "default", "low")) == 1 + 5 + 2 + 2
    )  # warm-up, saves, m2m pre/post_add, payment (two receivers)


def test_the_jobs_of_a_transaction_for_one_queue_are_one_command(connection, monkeypatch):
    # Given warm queues
    Invoice.objects.create(reference="warm-up")
    connection.delete("rq:queue:high")
    round_trips = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        round_trips.append(command)
        return original(self, command, check_health)

    before = _calls(connection)
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)

    # When one transaction saves 20 invoices (one receiver, one queue)
    with transaction.atomic():
        invoices = [Invoice.objects.create(reference=f"INV-{number}") for number in range(20)]

    monkeypatch.undo()
    # Then one request carried one script, no MULTI/EXEC, and the jobs wait in order
    assert len(round_trips) == 1
    calls = _calls(connection)
    assert calls["eval"] - before["eval"] == 1
    assert calls["exec"] == before["exec"]
    pks = [job.args[2]["kwargs"]["instance"]["v"]["pk"] for job in jobs_on(connection, "high")]
    assert pks == [invoice.pk for invoice in invoices]


def _calls(connection: redis.Redis) -> dict[str, int]:
    stats = connection.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "exec")}


def test_on_commit_false_enqueues_inside_the_transaction(connection):
    with transaction.atomic():
        invoice_noted.send(sender="desk", text="call back")
        assert receivers_of(jobs_on(connection, "default")) == ["tests.receivers.record_note"]


def test_send_robust_asend_and_asend_robust_enqueue_too(connection):
    invoice = Invoice.objects.create(reference="INV-A")
    connection.flushall()

    invoice_paid.send_robust(sender="robust", invoice=invoice, amount=1)
    asyncio.run(invoice_paid.asend(sender="async", invoice=invoice, amount=2))
    results = asyncio.run(invoice_paid.asend_robust(sender="async robust", invoice=invoice, amount=3))

    assert all(not isinstance(response, Exception) for _, response in results)
    amounts = [job.args[2]["kwargs"]["amount"] for job in jobs_on(connection, "default")]
    assert amounts == [1, 2, 3]
    assert len(jobs_on(connection, "low")) == 3


def test_an_argument_a_job_cannot_carry_fails_the_send_naming_it(connection):
    request = RequestFactory().get("/")

    with pytest.raises(
        SerializationError, match=r"receiver tests\.receivers\.record_note got argument 'request'"
    ):
        invoice_noted.send(sender="desk", request=request)

    assert connection.keys("rq:job:*") == []


def test_queues_and_their_connection_are_built_once_and_rebuilt_when_settings_change(redis_url):
    high, low = queues.get_queue("high"), queues.get_queue("low")
    assert queues.get_queue("high") is high
    assert high.connection is low.connection

    with override_settings(RQ_QUEUES={"high": {"URL": redis_url, "DEFAULT_TIMEOUT": 5}}):
        rebuilt = queues.get_queue("high")
        assert rebuilt is not high and rebuilt.connection is not high.connection
        with pytest.raises(KeyError):
            queues.get_queue("low")


def test_the_sending_alias_is_the_using_argument_else_the_instances_database():
    on_other = Invoice(reference="elsewhere")
    on_other._state.db = "other"

    assert enqueue.database_alias({"using": "replica", "instance": on_other}) == "replica"
    assert enqueue.database_alias({"instance": on_other}) == "other"
    assert enqueue.database_alias({"instance": Invoice()}) == "default"  # unsaved: no database yet
    assert enqueue.database_alias({}) == "default"


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_jobs_wait_for_the_commit_of_the_database_that_sent_them(connection):
    # A save on "other" outside a transaction on "other" is committed at once, whatever "default" does
    with transaction.atomic():
        Invoice.objects.using("other").create(reference="O-1")
        assert len(jobs_on(connection, "high")) == 1

    # A save inside a transaction on "other" waits for that transaction
    with transaction.atomic(using="other"):
        Invoice.objects.using("other").create(reference="O-2")
        assert len(jobs_on(connection, "high")) == 1
    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        Invoice.objects.using("other").create(reference="O-3")
        raise RuntimeError("rolled back on other")

    # And the job reads its instance back from "other"
    first, second = jobs_on(connection, "high")
    run_receiver(*second.args)
    assert Effect.objects.get(receiver="record_invoice").value == {
        "created": True,
        "reference": "O-2",
        "total": "0.00",
        "sender": "testapp.Invoice",
        "signal_is_post_save": True,
        "using": "other",
    }


def test_manual_transaction_management_is_refused_rather_than_enqueueing_before_commit(connection):
    transaction.set_autocommit(False)
    try:
        with pytest.raises(TransactionManagementError, match="receiver tests.receivers.record_invoice waits"):
            Invoice.objects.create(reference="manual")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)

    assert connection.keys("rq:job:*") == []
