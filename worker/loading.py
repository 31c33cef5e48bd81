"""Telling "the job could not be loaded" apart from "the job's function raised".

rq resolves a job's function and decodes its arguments lazily, inside the attempt, so an
unimportable function or undecodable data shows up as an ordinary exception of the attempt. No
retry can mend either; `load_error` recognises them so the worker fails the job at once.
"""

from __future__ import annotations

import logging
import traceback
import zlib
from typing import TYPE_CHECKING

import redis
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.utils import current_timestamp, now, utcformat
from rq.worker import BaseWorker

from worker.exceptions import JobLoadError

if TYPE_CHECKING:
    from rq.queue import Queue

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger: `rq worker` prints it


def load_error(job: Job, exc: BaseException | None) -> JobLoadError | None:
    """The `JobLoadError` explaining `exc` if `job` cannot be loaded here, else None.

    Called after an attempt failed: it decodes the job's data and imports its function again
    (both cached by then when they work), so an `ImportError` raised *inside* the function is not
    mistaken for an unimportable function.
    """
    if isinstance(exc, JobLoadError):
        return exc
    if exc is None:
        return None
    try:
        func_name = job.func_name
        job.args  # noqa: B018 - decoding is the check
        job.kwargs  # noqa: B018
    except DeserializationError as error:
        return JobLoadError(job.id, "its data (function name and arguments)", error.__cause__ or error)
    if func_name is None:
        return JobLoadError(job.id, "its function (no function name stored)")
    try:
        func = job.func
    except Exception as error:  # import_attribute raises ValueError, AttributeError, ImportError...
        return JobLoadError(job.id, f"function {func_name!r}", error)
    if func is None:
        return JobLoadError(job.id, f"function {func_name!r}")
    return None


def fail_unreadable(worker: BaseWorker, job_id: str, queue: Queue, cause: BaseException) -> JobLoadError:
    """Fail a job whose hash rq could not read back, by id: there is no `Job` to hand to rq."""
    error = JobLoadError(job_id, "its stored job hash", cause)
    error.__cause__ = cause
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    job_key = worker.job_class.key_for(job_id)
    with worker.connection.pipeline() as pipe:
        pipe.hset(
            job_key,
            mapping={
                "status": JobStatus.FAILED.value,
                "exc_info": zlib.compress(text.encode()),
                "ended_at": utcformat(now()),
            },
        )
        pipe.zadd(queue.failed_job_registry.key, {job_id: current_timestamp() + DEFAULT_FAILURE_TTL})
        pipe.lrem(queue.intermediate_queue_key, 1, job_id)
        pipe.execute()
    logger.error(
        "Job %s: cannot load its stored job hash (%s: %s); moved to the failed registry of %r",
        job_id,
        type(cause).__name__,
        cause,
        queue.name,
    )
    return error


class UnreadableJobMixin(BaseWorker):
    """A job hash rq cannot read back fails that job, not the worker (rq would stop the work loop)."""

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as exc:
                job_id, queue = getattr(exc, "job_id", None), getattr(exc, "queue", None)
                if isinstance(exc, redis.RedisError) or not isinstance(job_id, str) or queue is None:
                    raise
                fail_unreadable(self, job_id, queue, exc)
