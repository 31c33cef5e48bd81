"""The registry of ``@async_receiver`` declarations: the allow-list of the job entrypoint.

A job names a receiver id (the receiver's dotted path) and `jobs.run_receiver` runs it only if this
process registered it (`lookup`), so a job can never make a worker import an arbitrary path.
Workers learn every receiver because `RqSignalsConfig.ready()` imports the ``receivers`` module of
every installed app; receivers defined elsewhere must be imported from an ``AppConfig.ready()``.
The decorator that fills it is `rq_signals.decorator.async_receiver`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

from rq_signals.conf import conf
from rq_signals.exceptions import UnknownReceiver
from worker.retries.backoff import Backoff

Retry = Backoff | Literal[False] | None


@dataclass(frozen=True)
class SignalRef:
    """A signal and how a job names it: its dotted path, and the name its payload carries."""

    signal: Signal
    path: str  # "django.db.models.signals.post_save", "shop.signals.order_paid"
    name: str  # "post_save" for Django's model signals (the payload codec keys on it), else `path`


@dataclass(frozen=True)
class AsyncReceiver:
    """One ``@async_receiver`` declaration. ``queue=None`` and ``retry=None`` mean "the setting's default"."""

    receiver_id: str
    func: Callable[..., Any]
    signals: tuple[SignalRef, ...]
    sender: Any
    queue: str | None
    retry: Retry
    on_commit: bool
    timeout: int | None
    dispatch_uid: str

    @property
    def is_coroutine(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def signal_ref(self, signal_path: str) -> SignalRef:
        """The registered signal a job names; `UnknownReceiver` if this receiver is not connected to it."""
        for ref in self.signals:
            if ref.path == signal_path:
                return ref
        raise UnknownReceiver(
            f"Receiver {self.receiver_id}: not connected to signal {signal_path!r} "
            f"(connected to {', '.join(ref.path for ref in self.signals)}); this process's code may be "
            "older than the sender's"
        )


_registry: dict[str, AsyncReceiver] = {}


def register(registration: AsyncReceiver) -> None:
    """Register `registration` under its receiver id (a later declaration of the same id replaces it)."""
    _registry[registration.receiver_id] = registration


def lookup(receiver_id: str) -> AsyncReceiver:
    """The registered receiver with this id; `UnknownReceiver` (naming what to do) otherwise."""
    try:
        if not isinstance(receiver_id, str):  # a forged job; unhashable ids would raise TypeError
            raise KeyError(receiver_id)
        return _registry[receiver_id]
    except KeyError:
        raise UnknownReceiver(
            f"Receiver {receiver_id!r} is not registered in this process: only functions decorated with "
            "@async_receiver can run. This process's code may be older than the sender's (deploy it "
            "to the workers too), or the receiver's module is not imported at start-up (define it in a "
            "`receivers` module of an installed app, or import its module from an AppConfig.ready())."
        ) from None


def require_configured_queues(receivers: Sequence[AsyncReceiver] | None = None) -> None:
    """ImproperlyConfigured naming each receiver whose queue is not in ``RQ_QUEUES``, and the queues that are.

    Run by `RqSignalsConfig.ready()` for every receiver imported at start-up (so a web process that
    runs no checks fails at start, not after a commit) and at each send for its receiver.
    """
    configured = conf.queues
    wrong: dict[str, list[str]] = {}
    for receiver in registered() if receivers is None else receivers:
        queue = receiver.queue or conf.default_queue
        if isinstance(queue, str) and queue not in configured:  # a non-str default is E003's to report
            source = "" if receiver.queue else ' (from RQ_SIGNALS["DEFAULT_QUEUE"])'
            wrong.setdefault(f"{queue!r}{source}", []).append(receiver.receiver_id)
    if wrong:
        named = "; ".join(f"queue {queue} of receiver(s) {', '.join(ids)}" for queue, ids in wrong.items())
        has = ", ".join(sorted(configured)) or "no queues"
        raise ImproperlyConfigured(
            f"{named}: not in RQ_QUEUES (which has: {has}). Add the queue to RQ_QUEUES or change the "
            "receiver's queue= (rq_signals.E001)."
        )


def resolve_receiver_id(name: str) -> str:
    """The receiver id a human means by `name`: a registered id, or a short name ending one.

    ``send_receipt`` or ``receivers.send_receipt`` names ``shop.receivers.send_receipt`` when no
    other registered receiver ends that way; several matches raise ValueError listing them. A
    dotted name matching none is returned as given (the failed jobs of a receiver since removed);
    a bare name matching none raises ValueError listing the registered receivers.
    """
    if name in _registry:
        return name
    matches = sorted(key for key in _registry if key.endswith(f".{name}"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"receiver {name!r} is ambiguous; it could be: {', '.join(matches)}")
    if "." in name:
        return name
    raise ValueError(
        f"no registered receiver is named {name!r}; registered: {', '.join(sorted(_registry)) or 'none'}"
    )


def registered() -> list[AsyncReceiver]:
    """Every registered receiver, by receiver id."""
    return [_registry[key] for key in sorted(_registry)]
