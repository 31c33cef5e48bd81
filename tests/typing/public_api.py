"""The public types as a user sees them: mypy checks this file (`mypy tests/typing`), pytest never runs it."""

from __future__ import annotations

from typing import Any, assert_type

from django.db.models.signals import post_save
from django.dispatch import Signal

from rq_signals import (
    AsyncReceiver,
    Backoff,
    MissingInstance,
    PayloadError,
    ReceiverDeclarationError,
    RqSignalsError,
    SerializationError,
    UnknownReceiver,
    UnknownReceiverInGrace,
    async_receiver,
    flush_jobs,
)
from rq_signals.registration import lookup
from tests.testapp.models import Order

order_paid = Signal()


@async_receiver(post_save, sender=Order, queue="high", retry=Backoff(max_retries=5, base=1.0, max_delay=300))
def send_confirmation(sender: type[Order], instance: Order, created: bool, **kwargs: Any) -> str:
    return instance.reference


@async_receiver([order_paid], retry=False, on_commit=False, timeout=30)
async def notify(sender: object, amount: int, **kwargs: Any) -> None:
    pass


# The decorator returns the function unchanged: same parameters, same return type, still callable.
assert_type(send_confirmation(Order, Order(), created=True), str)
send_confirmation(Order, Order(), True, using="default")
send_confirmation(Order, instance="not an order", created=True)  # type: ignore[arg-type]  # checked as before


async def calls_notify() -> None:
    await notify("till", amount=3)


assert_type(lookup("shop.receivers.send_confirmation"), AsyncReceiver)
assert_type(Backoff(max_retries=3).delay(1), float)
async_receiver(post_save, retry=3)  # type: ignore[arg-type]  # a retry is a Backoff, False or None
assert_type(flush_jobs(timeout=1.0), bool)

# The errors a caller may catch are importable from the package, under one base.
try:
    send_confirmation(Order, Order(), created=True)
except SerializationError as exc:  # raised by a send whose arguments cannot travel as JSON
    assert_type(exc, SerializationError)
    assert isinstance(exc, RqSignalsError) and isinstance(exc, TypeError)
except (PayloadError, UnknownReceiver, UnknownReceiverInGrace, ReceiverDeclarationError) as exc:
    assert isinstance(exc, RqSignalsError)
except MissingInstance as exc:
    assert_type(exc.model_label, str)
