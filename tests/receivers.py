"""Receivers the rq_signals tests send to: module-level, so a worker subprocess imports them too.

`rq_signals` autodiscovers this module (tests/settings.py installs the `tests` app). Each receiver
writes an `Effect` row (or an email) so a test can observe that, and how, it ran.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from django.core.mail import send_mail
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save
from django.dispatch import Signal, receiver

from rq_signals import Backoff, async_receiver, lifecycle
from tests.testapp.models import Effect, Invoice, Shipment

invoice_paid = Signal()
invoice_flagged = Signal()
invoice_noted = Signal()


class Flaky(Exception):
    """What `always_fails` raises."""


@async_receiver(post_save, sender=Invoice, queue="high")
def record_invoice(sender: Any, instance: Invoice, created: bool, **kwargs: Any) -> None:
    Effect.objects.create(
        receiver="record_invoice",
        key=str(instance.pk),
        value={
            "created": created,
            "reference": instance.reference,
            "total": str(instance.total),
            "sender": sender._meta.label,
            "signal_is_post_save": kwargs["signal"] is post_save,
            "using": kwargs["using"],
        },
    )


@async_receiver(post_delete, sender="testapp.Invoice", queue="low", retry=False)
def record_invoice_deleted(sender: Any, instance: Invoice, **kwargs: Any) -> None:
    Effect.objects.create(
        receiver="record_invoice_deleted", key=str(instance.pk), value={"reference": instance.reference}
    )


@async_receiver(m2m_changed, sender=Invoice.tags.through)
def record_tags(sender: Any, instance: Invoice, action: str, pk_set: set[int] | None, **kwargs: Any) -> None:
    if action.startswith("post_"):
        Effect.objects.create(
            receiver="record_tags",
            key=str(instance.pk),
            value={"action": action, "pk_set": sorted(pk_set or ()), "model": kwargs["model"]._meta.label},
        )


@async_receiver(invoice_paid, timeout=30)
async def record_payment(sender: Any, invoice: Invoice, amount: Any, **kwargs: Any) -> None:
    await Effect.objects.acreate(
        receiver="record_payment",
        key=str(invoice.pk),
        value={
            "amount": str(amount),
            "sender": sender,
            "signal_is_invoice_paid": kwargs["signal"] is invoice_paid,
        },
    )


@async_receiver(invoice_paid, queue="low")
def email_receipt(sender: Any, invoice: Invoice, amount: Any, **kwargs: Any) -> None:
    send_mail(
        f"Receipt for {invoice.reference}", f"Paid {amount}.", "shop@example.com", ["buyer@example.com"]
    )


@async_receiver(invoice_flagged, retry=Backoff(max_retries=1, base=0.0, jitter="none"))
def always_fails(sender: Any, reason: str, **kwargs: Any) -> None:
    raise Flaky(f"cannot handle {reason}")


@receiver(lifecycle.receiver_failed, sender=always_fails)
def record_failed_attempt(
    sender: Any, receiver_id: str, job_id: str | None, attempt: int, **kwargs: Any
) -> None:
    """A plain Django receiver of a lifecycle signal, run in the worker process."""
    Effect.objects.create(
        receiver="lifecycle",
        key=receiver_id,
        value={
            "job_id": job_id,
            "attempt": attempt,
            "will_retry": kwargs["will_retry"],
            "exception": repr(kwargs["exception"]),
        },
    )


@async_receiver([invoice_noted, invoice_flagged], on_commit=False, retry=False)
def record_note(sender: Any, **kwargs: Any) -> None:
    kwargs.pop("signal")
    Effect.objects.create(receiver="record_note", key=str(sender), value=kwargs)


invoice_exported = Signal()


@async_receiver(invoice_exported, retry=Backoff(max_retries=2, base=0.0, jitter="none"))
def export_invoice(sender: Any, invoice: Invoice, **kwargs: Any) -> None:
    """Fails on its first attempt (the export service is "down"), succeeds on the retry."""
    attempts = Effect.objects.filter(receiver="export_invoice", key=str(invoice.pk)).count()
    Effect.objects.create(receiver="export_invoice", key=str(invoice.pk), value={"attempt": attempts + 1})
    if attempts == 0:
        raise Flaky(f"export service down for {invoice.reference}")


@async_receiver([pre_save, pre_delete], sender=Shipment, retry=False)
def record_shipment(sender: Any, instance: Shipment, signal: Signal, **kwargs: Any) -> None:
    """pre_save gets the unsaved instance as sent (no pk yet); pre_delete the row as it was."""
    Effect.objects.create(
        receiver="record_shipment",
        key=str(instance.pk),
        value={
            "signal": "pre_save" if signal is pre_save else "pre_delete",
            "carrier": instance.carrier,
            "weight_kg": str(instance.weight_kg),
            "adding": instance._state.adding,
            "update_fields": sorted(kwargs["update_fields"] or []) if "update_fields" in kwargs else None,
        },
    )


# -- lifecycle signals, journaled (tests/app/test_lifecycle_worker.py) ---------------------------------

invoice_audited = Signal()
invoice_rejected = Signal()
invoice_stalled = Signal()

#: How long `stall_first_run`'s first run waits to be killed, seconds: a bound, not a timing.
STALL_SECONDS = 60.0


@async_receiver(invoice_audited, retry=Backoff(max_retries=1, base=0.2, jitter="none"))
def audit_invoice(sender: Any, invoice: Invoice, **kwargs: Any) -> None:
    """Fails its first attempt, succeeds on the retry 0.2 s later."""
    if not Effect.objects.filter(receiver="audit_invoice", key=str(invoice.pk)).exists():
        Effect.objects.create(receiver="audit_invoice", key=str(invoice.pk), value={})
        raise Flaky(f"auditor busy for {invoice.reference}")


@async_receiver(invoice_rejected, queue="low", retry=Backoff(max_retries=1, base=0.0, jitter="none"))
def reject_invoice(sender: Any, invoice: Invoice, **kwargs: Any) -> None:
    raise Flaky(f"cannot reject {invoice.reference}")


@async_receiver(invoice_stalled, retry=Backoff(max_retries=2, base=0.0, jitter="none"))
def stall_first_run(sender: Any, invoice: Invoice, **kwargs: Any) -> None:
    """Its first run hangs (until its worker is killed); later runs return at once."""
    runs = Effect.objects.filter(receiver="stall_first_run", key=str(invoice.pk)).count()
    Effect.objects.create(receiver="stall_first_run", key=str(invoice.pk), value={"pid": os.getpid()})
    if runs == 0:
        time.sleep(STALL_SECONDS)


LIFECYCLE_SIGNALS = {
    "enqueued": lifecycle.receiver_enqueued,
    "started": lifecycle.receiver_started,
    "succeeded": lifecycle.receiver_succeeded,
    "skipped": lifecycle.receiver_skipped,
    "failed": lifecycle.receiver_failed,
    "retrying": lifecycle.receiver_retrying,
    "exhausted": lifecycle.receiver_exhausted,
    "recovered": lifecycle.receiver_recovered,
}


def journal(
    signal: Signal, sender: Any, receiver_id: str, job_id: str | None, attempt: int, **details: Any
) -> None:
    """Every lifecycle signal of the journaled receivers, as an `Effect` row: what a listener is told."""
    [name] = [name for name, known in LIFECYCLE_SIGNALS.items() if known is signal]
    plain = {
        key: (
            type(value).__name__
            if isinstance(value, BaseException)
            else value.isoformat()
            if isinstance(value, datetime)
            else str(value)
            if isinstance(value, lifecycle.InstanceRef)
            else value
        )
        for key, value in details.items()
    }
    Effect.objects.create(
        receiver="journal",
        key=name,
        value={
            "receiver": receiver_id,
            "sender": sender is not None and sender.__name__,
            "job_id": job_id,
            "attempt": attempt,
            "pid": os.getpid(),
            **plain,
        },
    )


def broken_listener(**kwargs: Any) -> None:
    raise RuntimeError("metrics backend down")


for _name, _signal in LIFECYCLE_SIGNALS.items():
    for _receiver in (audit_invoice, reject_invoice, stall_first_run):
        _signal.connect(journal, sender=_receiver, dispatch_uid=f"journal-{_name}-{_receiver.__name__}")
    # A listener that raises: the journal still hears, the job is unchanged.
    _signal.connect(broken_listener, sender=reject_invoice, dispatch_uid=f"broken-{_name}")
