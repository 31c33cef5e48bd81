"""Lifecycle signals tell a project what happened to each receiver call, without changing what happens."""

from __future__ import annotations

import pytest
from rq.job import Job

from rq_signals import lifecycle
from rq_signals.jobs import run_receiver
from tests.receivers import record_invoice
from tests.testapp.models import Effect, Invoice
from worker.serializers import JSONSerializer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard():
    events = []

    def listen(signal, sender, **kwargs):
        events.append((signal, sender, kwargs))

    signals = (lifecycle.receiver_succeeded, lifecycle.receiver_skipped, lifecycle.receiver_failed)
    for signal in signals:
        signal.connect(listen, dispatch_uid="test_lifecycle")
    yield events
    for signal in signals:
        signal.disconnect(dispatch_uid="test_lifecycle")


def only_job_args(connection):
    [job_id] = connection.lrange("rq:queue:high", 0, -1)
    return Job.fetch(job_id.decode(), connection=connection, serializer=JSONSerializer).args


def test_a_call_that_returns_is_reported_as_succeeded(connection, heard):
    invoice = Invoice.objects.create(reference="L-1")

    run_receiver(*only_job_args(connection))

    assert heard == [
        (
            lifecycle.receiver_succeeded,
            record_invoice,
            {
                "receiver_id": "tests.receivers.record_invoice",
                "job_id": None,
                "attempt": 1,
                "instance": lifecycle.InstanceRef("testapp.Invoice", invoice.pk),
            },
        )
    ]
    assert str(heard[0][2]["instance"]) == f"testapp.Invoice pk={invoice.pk}"


def test_a_skipped_call_is_reported_with_its_reason(connection, heard):
    invoice = Invoice.objects.create(reference="L-2")
    Invoice.objects.filter(pk=invoice.pk).delete()

    run_receiver(*only_job_args(connection))

    [(signal, _, details)] = heard
    assert signal is lifecycle.receiver_skipped
    assert f"testapp.Invoice with pk={invoice.pk} no longer exists" in details["reason"]


def test_a_listener_that_raises_does_not_change_the_outcome(connection, caplog):
    def broken(**kwargs):
        raise RuntimeError("metrics backend down")

    lifecycle.receiver_succeeded.connect(broken, dispatch_uid="broken")
    try:
        Invoice.objects.create(reference="L-3")
        assert run_receiver(*only_job_args(connection)) == "called"
    finally:
        lifecycle.receiver_succeeded.disconnect(dispatch_uid="broken")

    assert Effect.objects.filter(receiver="record_invoice").exists()
    assert "lifecycle listener" in caplog.text and "metrics backend down" in caplog.text
