"""What ``manage.py rqsignals list`` shows: every async receiver with its effective queue and policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models

from rq_signals import registration
from rq_signals.conf import conf
from worker.retries.backoff import Backoff


@dataclass(frozen=True)
class ReceiverRow:
    receiver_id: str
    signals: str
    sender: str
    queue: str
    retry: str
    on_commit: bool


def receiver_rows() -> list[ReceiverRow]:
    """One row per registered receiver, defaults resolved against the current settings."""
    return [
        ReceiverRow(
            receiver_id=declared.receiver_id,
            signals=", ".join(ref.name for ref in declared.signals),
            sender=describe_sender(declared.sender),
            queue=declared.queue or f"{conf.default_queue} (default)",
            retry=describe_retry(declared.retry),
            on_commit=declared.on_commit,
        )
        for declared in registration.registered()
    ]


def describe_sender(sender: Any) -> str:
    if sender is None:
        return "any"
    if isinstance(sender, type) and issubclass(sender, models.Model):
        return sender._meta.label
    if isinstance(sender, type):
        return f"{sender.__module__}.{sender.__qualname__}"
    return str(sender) if isinstance(sender, str) else repr(sender)


def describe_retry(retry: Backoff | bool | None) -> str:
    if retry is False:
        return "no retries"
    if retry is None:
        default = conf.default_retry
        return f"{describe_retry(default or False)} (default)"
    if isinstance(retry, Backoff):
        return (
            f"{retry.max_retries} retries, {retry.base:g}s x{retry.factor:g} up to {retry.max_delay:g}s, "
            f"jitter {retry.jitter}"
        )
    return repr(retry)
