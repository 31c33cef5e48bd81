"""Receivers of the chaos scenarios; workers import this module (`tests.chaos.settings` installs the app).

Every run writes to the Redis of its own job (keys in `tests.chaos.keys`), so a scenario can account
for each job it sent: when each run of a tag began and ended, in which process, and whether it began
while an earlier run's process was still alive. Import it through the ``chaos_receivers`` fixture.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
from django.db.models.signals import post_save
from django.dispatch import Signal
from rq import get_current_job

from rq_signals import Backoff, async_receiver
from tests.chaos.keys import ENDED, LOG, OVERLAPS, STARTED, active_key, running_key
from tests.testapp.models import Invoice

work_high = Signal()
work_default = Signal()
work_low = Signal()

#: Retries come quickly in the chaos scenarios: a crash is retried within a second of its recovery.
CHAOS_RETRY = Backoff(max_retries=10, base=0.05, max_delay=1.0, jitter="none")


def redis_time(connection: Any) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1_000_000


@async_receiver(work_high, queue="high", retry=CHAOS_RETRY)
def run_high(sender: Any, tag: str, hold_seconds: float = 0.0, **kwargs: Any) -> None:
    record_run(tag, hold_seconds, kwargs.get("first_run_hold_seconds"))


@async_receiver(work_default, queue="default", retry=CHAOS_RETRY)
def run_default(sender: Any, tag: str, hold_seconds: float = 0.0, **kwargs: Any) -> None:
    record_run(tag, hold_seconds, kwargs.get("first_run_hold_seconds"))


@async_receiver(work_low, queue="low", retry=CHAOS_RETRY)
def run_low(sender: Any, tag: str, hold_seconds: float = 0.0, **kwargs: Any) -> None:
    record_run(tag, hold_seconds, kwargs.get("first_run_hold_seconds"))


@async_receiver(post_save, sender=Invoice, queue="default", retry=CHAOS_RETRY)
def order_saved(sender: Any, instance: Invoice, created: bool, **kwargs: Any) -> None:
    """An order's receiver: the tag is the order's reference, read from the committed row."""
    record_run(instance.reference, 0.0)


def record_run(tag: str, hold_seconds: float, first_run_hold_seconds: float | None = None) -> None:
    """One run of `tag`: its start and end on the Redis clock, and whether it overlapped another run.

    The run holds its worker `hold_seconds` (`first_run_hold_seconds` instead, if given, on its first run).
    """
    job = get_current_job()
    assert job is not None, "chaos receivers run on a worker"
    connection = job.connection
    pid = os.getpid()
    previous = connection.getset(active_key(tag), pid)
    if previous is not None and int(previous) != pid and _is_running(int(previous)):
        connection.sadd(OVERLAPS, tag)
    with connection.pipeline() as pipe:
        pipe.set(running_key(pid), tag, ex=120)
        pipe.rpush(LOG, f"{tag} start {redis_time(connection):.6f} {pid}")
        pipe.hincrby(STARTED, tag, 1)
        run_number = pipe.execute()[-1]
    if first_run_hold_seconds is not None and run_number == 1:
        hold_seconds = first_run_hold_seconds
    if hold_seconds:
        time.sleep(hold_seconds)  # the job's work: long enough to be killed in the middle of it
    with connection.pipeline() as pipe:
        pipe.rpush(LOG, f"{tag} end {redis_time(connection):.6f} {pid}")
        pipe.hincrby(ENDED, tag, 1)
        pipe.delete(running_key(pid))
        pipe.execute()
    if connection.get(active_key(tag)) == str(pid).encode():
        connection.delete(active_key(tag))


def _is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
