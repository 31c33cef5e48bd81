"""Putting many identical jobs on a queue quickly (one pipeline per batch), outside any timing, and
checking afterwards that they all ran.

Jobs are written and read back with the queue's own serializer: rq's default (pickle) for a plain
`rq.Queue`, JSON for the app's queues (`rq_signals.queues.get_queue`). Reading a JSON job with
pickle does not fail loudly: rq turns its unreadable meta into ``{"unserialized": ...}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rq import Queue
from rq.job import Job, JobStatus

from worker.retries.attempts import ATTEMPTS_META_KEY
from worker.retries.backoff import POLICY_META_KEY, Backoff

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
        first = fetch(queue, ids[index * size])
        last = fetch(queue, ids[(index + 1) * size - 1])
        for job in (first, last):
            if job.get_status() != JobStatus.FINISHED or job.meta.get(ATTEMPTS_META_KEY):
                raise RuntimeError(f"job {job.id} did not simply succeed: {job.get_status()}, {job.meta}")
        assert first.started_at is not None and last.ended_at is not None
        rates.append(size / (last.ended_at - first.started_at).total_seconds())
    return rates


def fetch(queue: Queue, job_id: str) -> Job:
    """Job `job_id` read with `queue`'s serializer (and job class), as its worker reads it."""
    return queue.job_class.fetch(job_id, connection=queue.connection, serializer=queue.serializer)


def verify_finished(queue: Queue, ids: Sequence[str], what: str) -> None:
    """Raise unless every job of `ids` has status "finished" and `queue`'s failed registry is empty.

    A refused job (the app's job gate), an unimportable function or a raise all leave a job that is
    not finished, so a run that did not really process its jobs fails loudly instead of reporting
    their rate. `what` names the run in the error.
    """
    statuses: Counter[str] = Counter()
    for start in range(0, len(ids), BATCH):
        with queue.connection.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + BATCH]:
                pipe.hget(queue.job_class.key_for(job_id), "status")
            statuses.update((value or b"missing").decode() for value in pipe.execute())
    failed = queue.failed_job_registry.get_job_ids()
    if statuses[JobStatus.FINISHED.value] != len(ids) or failed:
        example = ""
        if failed:
            example = f"; first failed job {failed[0]}: {last_error(queue, failed[0])}"
        raise RuntimeError(
            f"{what}: not every job finished: {dict(statuses)} of {len(ids)}, "
            f"{len(failed)} in the failed registry{example}"
        )


def last_error(queue: Queue, job_id: str) -> str:
    """The last line of a failed job's stored traceback (what refused or broke it)."""
    try:
        text = fetch(queue, job_id).exc_info or ""
    except Exception as error:  # a job that cannot be read back: say so rather than hide the first error
        return f"(cannot read the job: {error!r})"
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no traceback stored)"
