"""The receivers the Django benchmarks measure, and switching them on and off between variants.

`order_saved` is an `@async_receiver` (autodiscovered, so a worker knows it too); the others are
plain Django receivers connected only while their variant is measured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import django_rq
from django.db import transaction
from django.db.models.signals import post_save

from rq_signals import Backoff, async_receiver
from rq_signals.queues import get_queue
from tests.testapp.models import Order

#: Seconds of work the synchronous baseline receiver does (sleeps: a slow receiver usually waits on I/O).
SYNC_WORK_SECONDS = 0.020
RETRY = Backoff(max_retries=3, base=0.5)


@async_receiver(post_save, sender=Order, queue="bench", retry=RETRY)
def order_saved(sender: Any, instance: Order, created: bool, **kwargs: Any) -> None:
    """Does nothing: the worker-side benchmarks measure decoding and refetching `instance`."""


ASYNC_ID = "benchmarks.receivers.order_saved"


def sync_receiver(sender: Any, instance: Order, **kwargs: Any) -> None:
    time.sleep(SYNC_WORK_SECONDS)


def handwritten_receiver(sender: Any, instance: Order, **kwargs: Any) -> None:
    """What a careful user writes by hand: enqueue after commit on a queue built once."""
    pk = instance.pk
    transaction.on_commit(lambda: get_queue("bench").enqueue("benchmarks.jobs.noop", "testapp.Order", pk))


def handwritten_naive_receiver(sender: Any, instance: Order, **kwargs: Any) -> None:
    """What django-rq's README shows: `django_rq.get_queue()` per call (a new connection pool each time)."""
    pk = instance.pk
    transaction.on_commit(
        lambda: django_rq.get_queue("bench").enqueue("benchmarks.jobs.noop", "testapp.Order", pk)
    )


PLAIN = {
    "sync": sync_receiver,
    "handwritten": handwritten_receiver,
    "handwritten_naive": handwritten_naive_receiver,
}


def use(variant: str) -> None:
    """Leave exactly one receiver on `Order`'s post_save: `variant` ("none", "async" or a `PLAIN` key)."""
    post_save.disconnect(sender=Order, dispatch_uid=f"rq_signals:{ASYNC_ID}")
    for name in PLAIN:
        post_save.disconnect(sender=Order, dispatch_uid=f"bench:{name}")
    if variant == "async":
        async_receiver(post_save, sender=Order, queue="bench", retry=RETRY)(order_saved)
    elif variant in PLAIN:
        post_save.connect(PLAIN[variant], sender=Order, dispatch_uid=f"bench:{variant}")
    elif variant != "none":
        raise ValueError(f"receivers.use: unknown variant {variant!r}")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Exactly `name`'s receiver on `Order` ("background": ours, under ``FLUSH="background"``)."""
    from django.conf import settings
    from django.test import override_settings

    use("async" if name == "background" else name)
    flush = {"FLUSH": "background" if name == "background" else "commit"}
    try:
        with override_settings(RQ_SIGNALS={**settings.RQ_SIGNALS, **flush}):
            yield
    finally:
        use("none")
