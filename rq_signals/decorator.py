"""``@async_receiver``: validates at decoration time, connects a proxy, returns the function unchanged.

The declaration goes in the registry (`rq_signals.registration`), the allow-list of the job
entrypoint; Django calls the `SignalProxy`, which hands each send to `rq_signals.enqueue`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

from django.db.models import signals as model_signals
from django.db.models.signals import ModelSignal
from django.dispatch import Signal

from rq_signals.exceptions import ReceiverDeclarationError
from rq_signals.registration import (
    AsyncReceiver,
    Retry,
    SignalRef,
    lookup,
    register,
    require_configured_queues,
)
from rq_signals.values import short_repr
from worker.retries.backoff import Backoff

P = ParamSpec("P")
R = TypeVar("R")

_MODEL_SIGNAL_NAMES = (
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
    "pre_migrate",
    "post_migrate",
    "class_prepared",
)


def async_receiver(
    signal: Signal | Sequence[Signal],
    *,
    sender: Any = None,
    queue: str | None = None,
    retry: Retry = None,
    on_commit: bool = True,
    timeout: int | None = None,
    dispatch_uid: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated module-level function on an RQ worker whenever `signal` is sent.

    ``queue=None`` uses ``RQ_SIGNALS["DEFAULT_QUEUE"]``; ``retry=None`` uses
    ``RQ_SIGNALS["DEFAULT_RETRY"]`` and ``retry=False`` means no retries; ``timeout`` is in whole
    seconds (None: the queue's default). With ``on_commit=True`` the job is enqueued only after the
    sending transaction commits. `sender` may be a model class or a lazy ``"app_label.Model"``
    string (model signals only). The function is returned unchanged and stays directly callable.
    """
    signals = _signal_list(signal)
    _check_options(signals, sender, queue, retry, on_commit, timeout, dispatch_uid)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        receiver_id = _receiver_id(func)
        registration = AsyncReceiver(
            receiver_id=receiver_id,
            func=func,
            signals=tuple(_signal_ref(s, func, receiver_id) for s in signals),
            sender=sender,
            queue=queue,
            retry=retry,
            on_commit=on_commit,
            timeout=timeout,
            dispatch_uid=dispatch_uid or f"rq_signals:{receiver_id}",
        )
        register(registration)
        for ref in registration.signals:
            ref.signal.connect(
                SignalProxy(receiver_id, ref.path),
                sender=sender,
                weak=False,
                dispatch_uid=registration.dispatch_uid,
            )
        return func

    return decorate


class SignalProxy:
    """What Django calls instead of the receiver: encodes the arguments and hands them to `enqueue`.

    It holds the receiver id, not the function: after a re-import the proxy Django kept (same
    ``dispatch_uid``) sends for the current registration.
    """

    def __init__(self, receiver_id: str, signal_path: str) -> None:
        self.receiver_id = receiver_id
        self.signal_path = signal_path

    def __call__(self, signal: Signal, sender: Any, **kwargs: Any) -> None:
        # Not at import: settings.py may `import rq_signals` (so this module) before settings exist, and
        # enqueue imports django_rq (which reads settings at import) and the outbox's models (app loading).
        from rq_signals import enqueue

        registration = lookup(self.receiver_id)
        require_configured_queues([registration])  # inside the sender's transaction, never after its commit
        enqueue.send(registration, registration.signal_ref(self.signal_path), sender, kwargs)

    def __repr__(self) -> str:
        return f"<SignalProxy {self.signal_path} → {self.receiver_id}>"


def _signal_list(signal: Signal | Sequence[Signal]) -> list[Signal]:
    signals = (
        [signal] if isinstance(signal, Signal) else list(signal) if isinstance(signal, (list, tuple)) else []
    )
    if not signals or not all(isinstance(s, Signal) for s in signals):
        raise ReceiverDeclarationError(
            f"@async_receiver takes a Signal or a list of Signals, got {short_repr(signal)}"
        )
    return signals


def _check_options(
    signals: list[Signal],
    sender: Any,
    queue: Any,
    retry: Any,
    on_commit: Any,
    timeout: Any,
    dispatch_uid: Any,
) -> None:
    def bad(argument: str, value: Any, expected: str) -> ReceiverDeclarationError:
        return ReceiverDeclarationError(
            f"@async_receiver: {argument} must be {expected}, got {short_repr(value)}"
        )

    if queue is not None and (not isinstance(queue, str) or not queue):
        raise bad("queue", queue, "the name of an RQ_QUEUES entry or None")
    if retry is not None and retry is not False and not isinstance(retry, Backoff):
        raise bad("retry", retry, "a Backoff, False (no retries) or None (RQ_SIGNALS['DEFAULT_RETRY'])")
    if not isinstance(on_commit, bool):
        raise bad("on_commit", on_commit, "True or False")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        raise bad("timeout", timeout, "a whole number of seconds > 0, or None")
    if dispatch_uid is not None and not isinstance(dispatch_uid, str):
        raise bad("dispatch_uid", dispatch_uid, "a string or None")
    if isinstance(sender, str):
        if sender.count(".") != 1 or not all(sender.split(".")):
            raise bad("sender", sender, "a model class or an 'app_label.ModelName' string")
        if not all(isinstance(s, ModelSignal) for s in signals):
            raise bad(
                "sender", sender, "an object (a lazy 'app_label.Model' string works with model signals only)"
            )


def _receiver_id(func: Any) -> str:
    """The receiver's dotted path; rejects what a worker could not import by that path."""
    name = getattr(func, "__qualname__", None) or repr(func)
    module = getattr(func, "__module__", None)
    where = f"{module}.{name}" if module else name
    if not inspect.isfunction(func):
        problem = f"{short_repr(func)} is not a function"
        if inspect.ismethod(func):
            problem = f"{where} is a method"
    elif func.__name__ == "<lambda>":
        problem = f"{where} is a lambda"
    elif "<locals>" in func.__qualname__:
        problem = f"{where} is a nested function (or closure)"
    elif "." in func.__qualname__:
        problem = f"{where} is a method"
    elif module in (None, "__main__"):
        problem = f"{where} is defined in __main__, which a worker cannot import"
    else:
        return where
    raise ReceiverDeclarationError(
        f"@async_receiver: {problem}; a worker imports receivers by dotted path, so decorate a "
        "module-level function (def at the top level of a module, e.g. shop/receivers.py)."
    )


def _signal_ref(signal: Signal, func: Callable[..., Any], receiver_id: str) -> SignalRef:
    for name in _MODEL_SIGNAL_NAMES:
        if getattr(model_signals, name) is signal:
            return SignalRef(signal, f"django.db.models.signals.{name}", name)
    path = _module_level_path(signal, func.__module__)
    if path is None:
        raise ReceiverDeclarationError(
            f"@async_receiver: the signal {short_repr(signal)} of receiver {receiver_id} is not a "
            f"module-level attribute of {func.__module__} or of a module it imports, so a job cannot "
            "name it; define it at module level (e.g. shop/signals.py: order_paid = Signal()) and "
            "import it into the receiver's module (from shop.signals import order_paid, or from shop "
            "import signals)."
        )
    return SignalRef(signal, path, path)


def _module_level_path(signal: Signal, receiver_module: str) -> str | None:
    """``module.attribute`` naming `signal`, looked up from the receiver's module only.

    The receiver's module globals first, then the globals of the modules it imported (``from shop
    import signals``). Both are the same in every process that imports the receiver's module, so
    the web process and the worker find the same path, whatever else each has imported.
    """
    module = sys.modules.get(receiver_module)
    namespace: dict[str, Any] = dict(vars(module)) if module is not None else {}
    for attribute, value in namespace.items():
        if value is signal and not attribute.startswith("_"):
            return f"{receiver_module}.{attribute}"
    for value in namespace.values():
        if isinstance(value, ModuleType):
            for attribute, inner in dict(vars(value)).items():
                if inner is signal and not attribute.startswith("_"):
                    return f"{value.__name__}.{attribute}"
    return None
