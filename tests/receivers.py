"""Receivers the rq_signals tests send to: module-level, so a worker subprocess imports them too.

`rq_signals` autodiscovers this module (tests/settings.py installs the `tests` app). Each receiver
writes an `Effect` row (or an email) so a test can observe that, and how, it ran.
"""

from __future__ import annotations

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
