"""A real `manage.py rqworker` subprocess runs the receivers of committed transactions, and nothing else."""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.receivers import invoice_exported, invoice_paid
from tests.testapp.models import Effect, Invoice, Tag

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def effects(receiver: str) -> list[dict]:
    return [effect.value for effect in Effect.objects.filter(receiver=receiver).order_by("pk")]


def test_a_worker_runs_every_kind_of_receiver_after_commit_with_the_arguments_django_gave(
    run_worker, mailbox
):
    # Given a transaction that saves, tags and pays an invoice, and deletes another
    doomed = Invoice.objects.create(reference="DOOMED")
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-42", total="99.90")
        invoice.tags.add(Tag.objects.create(name="vip"))
        invoice_paid.send(sender="checkout", invoice=invoice, amount=99)
        doomed_pk = doomed.pk
        doomed.delete()

    # When a worker drains the queues
    run_worker()

    # Then each receiver ran once, with what Django would have passed it (DOOMED's post_save job
    # found its row gone: skipped, under the default MISSING_INSTANCE policy)
    assert effects("record_invoice") == [
        {
            "created": True,
            "reference": "INV-42",
            "total": "99.90",
            "sender": "testapp.Invoice",
            "signal_is_post_save": True,
            "using": "default",
        },
    ]
    assert effects("record_tags") == [
        {
            "action": "post_add",
            "pk_set": list(invoice.tags.values_list("pk", flat=True)),
            "model": "testapp.Tag",
        }
    ]
    # an async def receiver, run by the worker through asyncio
    assert effects("record_payment") == [
        {"amount": "99", "sender": "checkout", "signal_is_invoice_paid": True}
    ]
    # a post_delete receiver gets the deleted row as it was (a snapshot: the row is gone)
    assert Effect.objects.get(receiver="record_invoice_deleted").key == str(doomed_pk)
    assert effects("record_invoice_deleted") == [{"reference": "DOOMED"}]
    [receipt] = mailbox()
    assert "Subject: Receipt for INV-42" in receipt


def test_after_a_rollback_the_worker_has_nothing_to_run(run_worker, mailbox):
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-43")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=1)
        raise RuntimeError("card declined")

    log = run_worker()

    assert Effect.objects.count() == 0
    assert mailbox() == []
    assert "run_receiver" not in log


def test_a_receiver_whose_row_is_gone_is_skipped_with_a_warning_naming_it(run_worker, connection):
    # Given a job for an invoice deleted before the worker got to it
    invoice = Invoice.objects.create(reference="GONE")
    Invoice.objects.filter(pk=invoice.pk).delete()  # a queryset delete: no signals, no new jobs

    log = run_worker()

    # Then the receiver did not run, the job finished, and the log says which row was missing
    assert effects("record_invoice") == []
    assert "Receiver tests.receivers.record_invoice: skipped (job " in log
    assert f"testapp.Invoice with pk={invoice.pk} no longer exists" in log
    assert connection.zcard("rq:failed:high") == 0


def test_a_receiver_that_fails_once_is_retried_under_its_policy_and_succeeds(run_worker, connection):
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-44")
        invoice_exported.send(sender="nightly", invoice=invoice)

    log = run_worker()

    assert effects("export_invoice") == [{"attempt": 1}, {"attempt": 2}]
    assert "retry 1/2 in 0.010s (Flaky)" in log  # base=0.0: the least delay, MIN_DELAY_SECONDS
    assert connection.zcard("rq:failed:default") == 0
