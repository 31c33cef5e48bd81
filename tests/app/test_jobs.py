"""The job entrypoint rebuilds the call, runs only registered receivers, honours the missing-row policy."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings
from rq.job import Job

from rq_signals.exceptions import MissingInstance, PayloadError, UnknownReceiver
from rq_signals.jobs import run_receiver
from tests.receivers import invoice_paid
from tests.testapp.models import Effect, Invoice, Shipment
from worker import PermanentJobError
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)


def job_args(connection, queue):
    [job_id] = connection.lrange(f"rq:queue:{queue}", 0, -1)
    return Job.fetch(job_id.decode(), connection=connection, serializer=JSONSerializer).args


def test_a_job_calls_its_receiver_with_the_instance_fetched_fresh(connection):
    invoice = Invoice.objects.create(reference="draft")
    Invoice.objects.filter(pk=invoice.pk).update(reference="final")  # committed after the send

    assert run_receiver(*job_args(connection, "high")) == "called"

    assert Effect.objects.get(receiver="record_invoice").value["reference"] == "final"


def test_an_async_receiver_runs_through_asyncio(connection):
    invoice = Invoice.objects.create(reference="INV-9")
    connection.flushall()
    invoice_paid.send(sender="till", invoice=invoice, amount=5)

    assert run_receiver(*job_args(connection, "default")) == "called"

    assert Effect.objects.get(receiver="record_payment").value["amount"] == "5"


def test_a_gone_row_skips_the_receiver_with_a_warning_naming_model_and_pk(connection, caplog):
    invoice = Invoice.objects.create(reference="INV-10")
    Invoice.objects.filter(pk=invoice.pk).delete()

    with caplog.at_level(logging.WARNING, logger="rq_signals.jobs"):
        assert run_receiver(*job_args(connection, "high")) == "skipped"

    assert not Effect.objects.exists()
    assert (
        f"Receiver tests.receivers.record_invoice: skipped, testapp.Invoice with pk={invoice.pk}"
        in caplog.text
    )


def test_missing_instance_fail_raises_and_snapshot_runs_on_the_saved_values(connection):
    invoice = Invoice.objects.create(reference="INV-11", total="4.00")
    Invoice.objects.filter(pk=invoice.pk).delete()
    args = job_args(connection, "high")

    with override_settings(RQ_SIGNALS={"MISSING_INSTANCE": "fail"}), pytest.raises(MissingInstance):
        run_receiver(*args)
    with override_settings(RQ_SIGNALS={"MISSING_INSTANCE": "snapshot"}):
        run_receiver(*args)

    assert Effect.objects.get(receiver="record_invoice").value["total"] == "4.00"


def test_a_job_naming_an_unregistered_receiver_or_signal_fails_for_good(connection):
    Invoice.objects.create(reference="INV-12")
    receiver_id, signal_path, payload = job_args(connection, "high")

    with pytest.raises(UnknownReceiver, match="'os.system' is not registered") as unknown:
        run_receiver("os.system", signal_path, payload)
    with pytest.raises(UnknownReceiver, match="not connected to signal 'tests.receivers.invoice_paid'"):
        run_receiver(receiver_id, "tests.receivers.invoice_paid", payload)
    with pytest.raises(PayloadError):
        run_receiver(receiver_id, signal_path, {"format": 99})

    assert isinstance(unknown.value, PermanentJobError)  # the retry worker does not retry it


def test_pre_save_and_pre_delete_receivers_get_the_instance_as_it_was_sent(connection):
    shipment = Shipment.objects.create(carrier="DHL", weight_kg="1.250")  # pre_save of an unsaved row
    pk = shipment.pk
    shipment.delete()  # pre_delete, then the row is gone
    jobs = [
        Job.fetch(job_id.decode(), connection=connection, serializer=JSONSerializer)
        for job_id in connection.lrange("rq:queue:default", 0, -1)
    ]

    for job in jobs:
        run_receiver(*job.args)

    assert [(e.key, e.value) for e in Effect.objects.filter(receiver="record_shipment").order_by("pk")] == [
        (
            "None",
            {
                "signal": "pre_save",
                "carrier": "DHL",
                "weight_kg": "1.250",
                "adding": True,
                "update_fields": [],
            },
        ),
        (
            str(pk),
            {
                "signal": "pre_delete",
                "carrier": "DHL",
                "weight_kg": "1.250",
                "adding": False,
                "update_fields": None,
            },
        ),
    ]
