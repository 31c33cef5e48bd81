"""Run slow Django signal receivers on an RQ worker, after commit, with retries.

The errors and `Backoff` import at once (a settings module may build a policy); the decorator, the
receiver type and `flush_jobs` load on first use (PEP 562 ``__getattr__``), with rq and the Django
machinery they need, so ``from rq_signals import Backoff`` in settings or ``python -m
rq_signals.health`` does not pay for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from rq_signals.exceptions import (
    MissingInstance,
    PayloadError,
    ReceiverDeclarationError,
    RqSignalsError,
    SerializationError,
    UnknownReceiver,
    UnknownReceiverInGrace,
)
from worker.retries.backoff import Backoff

if TYPE_CHECKING:  # the same names, for type checkers and readers; at run time `__getattr__` loads them
    from rq_signals.decorator import async_receiver
    from rq_signals.flusher import flush_jobs
    from rq_signals.registration import AsyncReceiver

#: The names of `__all__` loaded on first use, and the module that defines each.
_LAZY: dict[str, str] = {
    "AsyncReceiver": "rq_signals.registration",
    "async_receiver": "rq_signals.decorator",
    "flush_jobs": "rq_signals.flusher",
}

__all__ = [
    "AsyncReceiver",
    "Backoff",
    "MissingInstance",
    "PayloadError",
    "ReceiverDeclarationError",
    "RqSignalsError",
    "SerializationError",
    "UnknownReceiver",
    "UnknownReceiverInGrace",
    "async_receiver",
    "flush_jobs",
]


def __getattr__(name: str) -> Any:
    """A lazily loaded public name, imported from its module on first use and kept here."""
    source = _LAZY.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
