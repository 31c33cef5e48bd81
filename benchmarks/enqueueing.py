"""Putting many identical jobs on a queue quickly (one pipeline per batch), outside any timing."""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job, JobStatus

from worker.attempts import ATTEMPTS_META_KEY
from worker.backoff import POLICY_META_KEY, Backoff

#: Every benchmark job carries the same policy our app attaches, so all classes see identical jobs.
POLICY_META = {POLICY_META_KEY: Backoff(max_retries=3, base=0.5).to_dict()}
BATCH = 500


def enqueue_many(
    queue: Queue, func: str, count: int, *, args: tuple[Any, ...] = (), meta: dict[str, Any] | None = None
) -> list[str]:
    """Enqueue `count` jobs of `func(*args)`; their ids in enqueue order."""
    ids: list[str] = []
    for start in range(0, count, BATCH):
        datas = [
            Queue.prepare_data(func, args=args, meta=dict(POLICY_META if meta is None else meta))
            for _ in range(min(BATCH, count - start))
        ]
        with queue.connection.pipeline() as pipe:
            jobs = queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
        ids += [job.id for job in jobs]
    return ids


def block_rates(queue: Queue, ids: list[str], blocks: int) -> list[float]:
    """Jobs/s over each of `blocks` consecutive runs of jobs, by rq's own start and end timestamps.

    One worker takes a FIFO queue in order, so block i spans from the start of its first job to
    the end of its last; the whole run is covered without counting the worker's start-up.
    """
    size = len(ids) // blocks
    rates = []
    for index in range(blocks):
        first = Job.fetch(ids[index * size], connection=queue.connection)
        last = Job.fetch(ids[(index + 1) * size - 1], connection=queue.connection)
        for job in (first, last):
            if job.get_status() != JobStatus.FINISHED or job.meta.get(ATTEMPTS_META_KEY):
                raise RuntimeError(f"job {job.id} did not simply succeed: {job.get_status()}, {job.meta}")
        assert first.started_at is not None and last.ended_at is not None
        rates.append(size / (last.ended_at - first.started_at).total_seconds())
    return rates
