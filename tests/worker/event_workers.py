"""Worker classes for subprocess tests of `worker.events`: building one connects, in its process, a hook
on every moment that journals what it was told to the Redis list `JOURNAL_KEY` (one JSON object a
moment), and a hook that raises on every moment. Importing this module connects nothing (the test
process measures round trips of workers without these hooks)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from rq.job import Job

from worker import events
from worker.metrics import JobMetrics
from worker.workers import RetryWorker, SimpleRetryWorker

JOURNAL_KEY = "test:events"


def _plain(value: object) -> object:
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _journal(moment: events.Moment) -> events.Hook:
    def hook(job: Job, **details: Any) -> None:
        entry = {"moment": moment, "job_id": job.id, "pid": os.getpid()}
        entry.update({key: _plain(value) for key, value in details.items()})
        job.connection.rpush(JOURNAL_KEY, json.dumps(entry))

    return hook


def tracker_down(job: Job, **details: Any) -> None:
    raise RuntimeError("error tracker down")


_JOURNAL_HOOKS = {moment: _journal(moment) for moment in events.MOMENTS}


def connect_journal() -> None:
    for moment in events.MOMENTS:
        events.connect(moment, tracker_down)
        events.connect(moment, _JOURNAL_HOOKS[moment])


class JournalingRetryWorker(RetryWorker):
    """`RetryWorker`, in a process whose moments are journaled; it counts metrics, with a 5 s lease."""

    job_metrics = JobMetrics()
    lease_ttl = 5.0
    recovery_interval = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        connect_journal()
        super().__init__(*args, **kwargs)


class JournalingSimpleRetryWorker(SimpleRetryWorker):
    """`SimpleRetryWorker`, in a process whose moments are journaled; it counts metrics, with a 5 s lease."""

    job_metrics = JobMetrics()
    lease_ttl = 5.0
    recovery_interval = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        connect_journal()
        super().__init__(*args, **kwargs)
