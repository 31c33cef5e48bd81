"""The worker's moments (`worker.events`) as lifecycle signals (`rq_signals.lifecycle`).

`worker/` knows nothing of Django: it calls hooks at a job's start, retry, final failure and
recovery. ``RqSignalsConfig.ready()`` connects the hooks here, in every process that sets Django
up (so ``manage.py rqworker`` and a worker started from a script after ``django.setup()``), and they
send ``receiver_started``, ``receiver_retrying``, ``receiver_exhausted`` and ``receiver_recovered``
for jobs of `rq_signals.jobs.run_receiver`; other jobs on the same queues are left alone.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections
from django.dispatch import Signal
from rq.job import Job

from rq_signals import defaults, lifecycle
from rq_signals.exceptions import UnknownReceiver
from rq_signals.registration import lookup
from worker import events

_SIGNALS: dict[events.Moment, Signal] = {
    "started": lifecycle.receiver_started,
    "retrying": lifecycle.receiver_retrying,
    "exhausted": lifecycle.receiver_exhausted,
    "recovered": lifecycle.receiver_recovered,
}


def connect_worker_events() -> None:
    """Send the lifecycle signals at the worker's moments in this process (idempotent)."""
    for moment, hook in _HOOKS.items():
        events.connect(moment, hook)


def receiver_call(job: Job) -> tuple[str, Any] | None:
    """The receiver id and payload of a job of `run_receiver`; None for any other job."""
    if job.func_name != defaults.JOB_FUNCTION:
        return None
    args = job.args
    if not args or not isinstance(args[0], str):
        return None
    return args[0], args[2] if len(args) > 2 else None


def _hook(moment: events.Moment) -> events.Hook:
    """The hook of `moment`: its signal, sent for a receiver call's job when anything listens."""
    signal = _SIGNALS[moment]

    def relay(job: Job, *, attempt: int, **details: Any) -> None:
        if not signal.receivers:
            return
        call = receiver_call(job)
        if call is None:
            return
        receiver_id, payload = call
        try:
            func: Any = lookup(receiver_id).func
        except UnknownReceiver:  # e.g. a worker older than the sender recovering its job: still reported
            func = None
        try:
            lifecycle.send(signal, func, receiver_id, job, attempt=attempt, payload=payload, **details)
        finally:
            if threading.current_thread() is not threading.main_thread():
                # The recovery thread sends receiver_recovered (and what follows) for as long as the
                # worker lives: the database connections its listeners opened are closed, as the
                # outbox relay's chore closes its own, never held (or left broken) for the next one.
                connections.close_all()

    relay.__qualname__ = f"rq_signals.worker_signals.{moment}"
    return relay


_HOOKS: dict[events.Moment, events.Hook] = {moment: _hook(moment) for moment in _SIGNALS}
