"""Periodic maintenance that worker processes run: a registry of callables, each with its interval.

A framework registers its chores once per process (rq_signals' ``AppConfig.ready()`` registers its
outbox relay), and every worker runs them, so there is no extra daemon to remember::

    register_maintenance(relay_outbox, interval_seconds=5.0, name="rq_signals.outbox.relay")

`Chores` (which every worker of ours runs) runs every registered callable once when the worker
starts (before its first
job, so a ``--burst`` worker runs them too), then in a daemon thread whenever one is due, until the
worker stops. `run_due_maintenance()` can be called from any other loop instead. A callable that
raises is logged (with its name) and tried again at its next due time: a chore never stops a worker.

A process never forks while a chore runs in another of its threads (`os.register_at_fork`; a fork
waits up to `FORK_WAIT_SECONDS` for it to end). A chore may hold a database connection in the middle
of a transaction, and SQLite keeps its lock state per process: a work horse forked then inherits a
lock that nothing in it will ever release, and its first write fails with "database is locked".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.threads import surviving

logger = logging.getLogger(__name__)

#: Longest the maintenance thread sleeps between two looks at the registry, in seconds.
MAX_IDLE_SECONDS = 1.0
#: Longest a fork waits for a chore running in another thread to end, in seconds.
FORK_WAIT_SECONDS = 30.0


@dataclass
class _Chore:
    func: Callable[[], object]
    interval_seconds: float
    next_due: float  # time.monotonic() seconds; 0.0: due at once


_lock = threading.Lock()  # guards _chores
_running = threading.Lock()  # one pass at a time per process (the thread, or an explicit call)
_running_in: int | None = None  # the thread running a pass
_held_for_fork = False  # the fork under way holds `_running`
_chores: dict[str, _Chore] = {}


def register_maintenance(
    func: Callable[[], object], interval_seconds: float, *, name: str | None = None
) -> str:
    """Run `func` in every worker of this process every `interval_seconds` (float seconds, > 0).

    Registering under a name already taken replaces that entry (an app registry may be set up twice),
    so `name` defaults to the function's dotted path. Returns the name.
    """
    if not callable(func):
        raise TypeError(f"register_maintenance: func must be callable, got {func!r}")
    if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, (int, float)):
        raise TypeError(f"register_maintenance: interval_seconds must be a number, got {interval_seconds!r}")
    if not interval_seconds > 0:
        raise ValueError(f"register_maintenance: interval_seconds must be > 0, got {interval_seconds!r}")
    key = name or f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    with _lock:
        _chores[key] = _Chore(func, float(interval_seconds), next_due=0.0)
    return key


def unregister_maintenance(name: str) -> bool:
    """Forget a chore; False if none had that name."""
    with _lock:
        return _chores.pop(name, None) is not None


def registered_maintenance() -> dict[str, float]:
    """Name to interval in seconds of every registered chore."""
    with _lock:
        return {name: chore.interval_seconds for name, chore in _chores.items()}


def run_due_maintenance(*, force: bool = False) -> list[str]:
    """Run every chore that is due (all of them with `force`); returns the names of those that ran.

    Chores run one after the other in the calling thread; a pass already under way in another
    thread makes this call return ``[]`` at once rather than run the chores twice concurrently.
    """
    global _running_in
    if not _running.acquire(blocking=False):
        return []
    _running_in = threading.get_ident()
    try:
        now = time.monotonic()
        with _lock:
            due = [(name, chore) for name, chore in _chores.items() if force or chore.next_due <= now]
        for name, chore in due:
            with surviving(logger, f"Maintenance {name}", f"next try in {chore.interval_seconds:.1f}s"):
                chore.func()
            chore.next_due = time.monotonic() + chore.interval_seconds
        return [name for name, _ in due]
    finally:
        _running_in = None
        _running.release()


def _before_fork() -> None:
    global _held_for_fork
    if _running_in == threading.get_ident():
        return  # a chore itself forks (a subprocess): it cannot wait for itself
    _held_for_fork = _running.acquire(timeout=FORK_WAIT_SECONDS)
    if not _held_for_fork:
        logger.warning(
            "Maintenance: a chore still runs after %.0fs; forking anyway (its open database "
            "connections may be locked in the child)",
            FORK_WAIT_SECONDS,
        )


def _after_fork_in_parent() -> None:
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _running.release()


def _after_fork_in_child() -> None:
    global _running, _running_in, _held_for_fork
    _running, _running_in, _held_for_fork = threading.Lock(), None, False  # no chore runs in the child


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def seconds_until_due() -> float:
    """Seconds until the next chore is due (0.0 if one is due now), at most `MAX_IDLE_SECONDS`."""
    now = time.monotonic()
    with _lock:
        soonest = min((chore.next_due for chore in _chores.values()), default=now + MAX_IDLE_SECONDS)
    return min(max(soonest - now, 0.0), MAX_IDLE_SECONDS)


class Chores:
    """Runs the registered chores for a worker: once at start (before the first job), then in a
    daemon thread."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def start(self) -> None:
        run_due_maintenance(force=True)
        self._stop.clear()
        threading.Thread(target=self._loop, name="worker-maintenance", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(seconds_until_due()):
            with surviving(logger, "Maintenance pass", "next when a chore is due"):
                run_due_maintenance()
