"""A receiver whose queue is not in RQ_QUEUES stops a process at start-up, never after a commit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from rq_signals import async_receiver, registration
from tests.receivers import invoice_noted, invoice_paid
from tests.support.processes import REPO_ROOT, python_env
from tests.testapp.models import Invoice

pytestmark = pytest.mark.django_db(transaction=True)


def send_emails(sender, **kwargs):
    pass


def test_a_process_that_runs_no_checks_fails_at_start_naming_receiver_and_queue():
    # Given settings whose default queue is missing from RQ_QUEUES (gunicorn and `shell` run no checks)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "manage.py"), "shell", "-c", "print('started')"],
        env=python_env({"RQ_SIGNALS_TEST_SETTINGS": json.dumps({"DEFAULT_QUEUE": "emails"})}),
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then the process stops before it serves anything, saying which receiver, which queue, which exist
    assert result.returncode != 0 and "started" not in result.stdout
    assert (
        "django.core.exceptions.ImproperlyConfigured: queue 'emails' (from RQ_SIGNALS[\"DEFAULT_QUEUE\"]) "
        "of receiver(s) tests.receivers.always_fails, tests.receivers.audit_invoice, "
        "tests.receivers.export_invoice, "
    ) in result.stderr
    assert "tests.receivers.record_payment" in result.stderr
    assert ": not in RQ_QUEUES (which has: default, high, low)." in result.stderr
    assert "KeyError" not in result.stderr


@pytest.mark.usefixtures("forget_registrations")
def test_the_start_up_check_names_every_misrouted_receiver():
    async_receiver(invoice_noted, queue="emails")(send_emails)

    with pytest.raises(ImproperlyConfigured) as wrong:
        registration.require_configured_queues()

    assert str(wrong.value) == (
        "queue 'emails' of receiver(s) tests.app.test_startup.send_emails: not in RQ_QUEUES (which has: "
        "default, high, low). Add the queue to RQ_QUEUES or change the receiver's queue= (rq_signals.E001)."
    )


@pytest.mark.usefixtures("forget_registrations")
def test_a_receiver_registered_after_start_up_fails_the_send_inside_the_transaction(connection):
    # Given a receiver imported late (after AppConfig.ready) with a queue RQ_QUEUES lacks
    async_receiver(invoice_paid, queue="emails")(send_emails)

    # When a request sends its signal inside a transaction
    with pytest.raises(ImproperlyConfigured, match="queue 'emails' of receiver"), transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-E1")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=1)

    # Then the row was rolled back with it, rather than committed with a KeyError after
    assert not Invoice.objects.filter(reference="INV-E1").exists()
    assert connection.keys("rq:queue:*") == []
