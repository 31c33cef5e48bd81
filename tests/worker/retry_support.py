"""Helpers shared by the retry tests: enqueueing with a policy, reading what a job went through."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.waiting import wait_until
from tests.worker import jobs
from worker import Backoff
from worker.retries.attempts import ATTEMPTS_META_KEY
from worker.retries.backoff import POLICY_META_KEY
from worker.retries.scheduler import promote_due
from worker.workers import SimpleRetryWorker

#: Short, exact delays so the tests run fast; "none" jitter keeps them predictable.
FAST = Backoff(max_retries=3, base=0.05, factor=2, jitter="none")
#: For tests that look at a retry while it waits: no promoter can move it before they look.
SLOW = Backoff(max_retries=3, base=60, jitter="none")


def enqueue(
    queue: Queue, func: Callable[..., Any], *args: Any, policy: Backoff | None = FAST, **kwargs: Any
) -> Job:
    meta = {POLICY_META_KEY: policy.to_dict()} if policy is not None else {}
    return queue.enqueue(func, *args, meta=meta, **kwargs)


def attempts(job: Job) -> list[dict[str, Any]]:
    job.refresh()
    return list(job.meta.get(ATTEMPTS_META_KEY, []))


def runs(connection: redis.Redis, job: Job) -> int:
    return int(connection.get(jobs.runs_key(job.id)) or 0)


def starts(connection: redis.Redis, job: Job) -> list[float]:
    return [float(value) for value in connection.lrange(jobs.starts_key(job.id), 0, -1)]


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def settle(connection: redis.Redis, queue: Queue, job: Job, *, timeout: float) -> JobStatus:
    """Promote due retries (as the retry promoter does) until the job finished or failed for good."""

    def settled() -> JobStatus | None:
        promote_due(connection, [queue])
        status = job.get_status()
        return status if status in (JobStatus.FINISHED, JobStatus.FAILED) else None

    status: JobStatus = wait_until(
        settled, timeout=timeout, what=f"job {job.id} to finish or fail", interval=0.05
    )
    return status


def run_until_settled(
    queues: Sequence[Queue], job: Job, *, worker_class: type = SimpleRetryWorker, timeout: float = 10.0
) -> JobStatus:
    """Burst-work `queues` until `job` finishes or fails for good, promoting its retries when due."""
    connection = queues[0].connection
    deadline = time.monotonic() + timeout
    while True:
        worker_class(queues, connection=connection).work(burst=True)
        status = job.get_status()
        if status in (JobStatus.FINISHED, JobStatus.FAILED):
            return status
        remaining = max(0.1, deadline - time.monotonic())
        wait_until(
            lambda: any(len(q) for q in queues) or promote_due(connection, queues).moved,
            timeout=remaining,
            what=f"a retry of job {job.id} to be due",
        )
