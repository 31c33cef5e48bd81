"""EAGER runs receivers in the sending process, after commit, through the same JSON round trip as a worker."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import override_settings

from rq_signals.exceptions import SerializationError
from tests.receivers import invoice_paid
from tests.testapp.models import Effect, Invoice

eager = override_settings(RQ_SIGNALS={"EAGER": True})


@eager
@pytest.mark.django_db(transaction=True)
def test_eager_receivers_run_after_commit_and_never_after_rollback(connection):
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="E-1")
        invoice_paid.send(sender="till", invoice=invoice, amount=7)
        assert not Effect.objects.exists()  # still waiting for the commit

    assert sorted(Effect.objects.values_list("receiver", flat=True)) == ["record_invoice", "record_payment"]
    with pytest.raises(RuntimeError), transaction.atomic():
        Invoice.objects.create(reference="E-2")
        raise RuntimeError("rolled back")
    assert Effect.objects.count() == 2
    assert connection.keys("rq:*") == []  # nothing went to Redis


@eager
@pytest.mark.django_db
def test_eager_receivers_run_in_a_test_case_transaction_with_captured_on_commit_callbacks(
    django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invoice = Invoice.objects.create(reference="E-3")
        invoice_paid.send(sender="till", invoice=invoice, amount=8)

    assert len(callbacks) == 3  # one per receiver call: record_invoice, record_payment, email_receipt
    assert Effect.objects.get(receiver="record_payment").value["amount"] == "8"
    assert [message.subject for message in mailoutbox] == ["Receipt for E-3"]


@eager
@pytest.mark.django_db
def test_eager_mode_refuses_what_a_worker_could_not_receive():
    with pytest.raises(SerializationError, match="argument 'amount'"):
        invoice_paid.send(sender="till", invoice=None, amount=object())
