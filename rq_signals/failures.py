"""Failed receiver calls across the ``RQ_QUEUES`` queues, on top of `worker.FailureRegistry`.

What ``manage.py rqsignals failures|requeue|purge`` does; the command only parses and prints.
A receiver call's job runs `rq_signals.jobs.run_receiver`, whose first argument is the receiver id.
An entry of a failed registry whose id rq would not accept is skipped (or, by `purge`, removed) and
`on_skip` is told, a line naming it (by default a warning is logged); the rest are listed and acted on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from rq.job import Job
from rq.queue import Queue

from rq_signals import defaults, queues
from rq_signals.conf import conf
from rq_signals.dashboard_limits import DashboardJob
from worker.exceptions import NoSuchFailedJob
from worker.retries.failures import FailedJob, FailureRegistry

_AGE = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])\s*$")
_AGE_UNITS_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class FailedCall:
    """A failed receiver call: where it failed, which receiver, and rq's record of every attempt."""

    queue: str
    receiver_id: str
    description: str | None
    failure: FailedJob


#: Told of each failed-registry entry skipped because rq cannot read its id: a line naming it.
OnSkip = Callable[[str], None]


def failed_calls(
    queue: str | None = None, receiver_id: str | None = None, *, on_skip: OnSkip | None = None
) -> list[FailedCall]:
    """Failed receiver calls, newest first; `queue` and `receiver_id` narrow the search."""
    calls: list[FailedCall] = []
    for name in _queue_names(queue):
        registry = _registry(name, on_skip)
        failures = registry.list(func=defaults.JOB_FUNCTION)
        rq_queue = queues.get_queue(name)
        ids = [failure.job_id for failure in failures]
        jobs = DashboardJob.fetch_many(ids, connection=rq_queue.connection, serializer=rq_queue.serializer)
        for failure, job in zip(failures, jobs, strict=True):
            receiver = _receiver_of(job)
            if receiver is not None and receiver_id in (None, receiver):
                calls.append(FailedCall(name, receiver, job.description if job else None, failure))
    return sorted(calls, key=lambda call: call.failure.failed_at, reverse=True)


def requeue(job_id: str) -> str:
    """Put one failed job back on its queue with a fresh retry budget; returns the queue's name."""
    for name in _queue_names(None):
        try:
            _registry(name).requeue(job_id)
        except NoSuchFailedJob:
            continue
        return name
    raise NoSuchFailedJob(job_id, ", ".join(sorted(conf.queues)))


def requeue_all(
    queue: str | None = None, receiver_id: str | None = None, *, on_skip: OnSkip | None = None
) -> int:
    """Requeue every failed receiver call matching the filters; returns how many were requeued."""
    requeued = 0
    for call in failed_calls(queue, receiver_id, on_skip=on_skip):
        try:
            _registry(call.queue).requeue(call.failure.job_id)
        except NoSuchFailedJob:
            continue  # requeued or purged by someone else meanwhile
        requeued += 1
    return requeued


def purge(
    older_than: timedelta | None = None, queue: str | None = None, *, on_skip: OnSkip | None = None
) -> int:
    """Delete the failed jobs (of any function) that failed more than `older_than` ago, or all of them."""
    return sum(_registry(name, on_skip).purge(older_than) for name in _queue_names(queue))


def parse_age(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or ``"2w"`` as a timedelta; ValueError names bad text."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an age; write a number and a unit: 45s, 30m, 12h, 7d or 2w")
    return timedelta(seconds=float(match["amount"]) * _AGE_UNITS_SECONDS[match["unit"]])


def _queue_names(queue: str | None) -> list[str]:
    if queue is None:
        return sorted(conf.queues)
    if queue not in conf.queues:
        raise KeyError(f"queue {queue!r} is not in RQ_QUEUES ({', '.join(sorted(conf.queues))})")
    return [queue]


def _registry(name: str, on_skip: OnSkip | None = None) -> FailureRegistry:
    """The failed registry of queue `name`, its jobs loaded within the job size limits (MAX_JOB_*_BYTES)."""
    queue = queues.get_queue(name)
    bounded = Queue(
        queue.name, connection=queue.connection, serializer=queue.serializer, job_class=DashboardJob
    )
    return FailureRegistry(bounded, on_skip=on_skip)


def _receiver_of(job: Job | None) -> str | None:
    if job is None:
        return None
    try:
        receiver = job.args[0]
    except Exception:  # undecodable job data: FailureRegistry's listing already says so
        return None
    return receiver if isinstance(receiver, str) else None


def failed_counts() -> dict[str, int]:
    """How many failed jobs (of any function) each ``RQ_QUEUES`` queue's failed registry holds."""
    return {name: queues.get_queue(name).failed_job_registry.count for name in _queue_names(None)}
