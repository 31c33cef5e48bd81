"""Telling "the job could not be loaded" apart from "the job's function raised"; jobs that must not run.

rq resolves a job's function and decodes its arguments lazily, inside the attempt, so an
unimportable function or undecodable data shows up as an ordinary exception of the attempt. No
retry can mend either; `load_error` recognises them so the worker fails the job at once. A job hash
rq cannot read back, a job over the worker's `worker.gate.limits.JobLimits` and a job the worker's
`worker.gate.gate.JobGate` refuses never reach an attempt: `JobLoading` fails them right after
the dequeue (`fail_at_once`), by id, without putting them back on a queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.worker import BaseWorker

from worker.bookkeeping import Dequeued
from worker.exceptions import JobLoadError
from worker.gate import job_ids
from worker.gate.gate import JobGate, gated_job_class, installed_job_gate
from worker.gate.limits import JobLimits, bounded_job_class, installed_job_limits, unloadable

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
        if isinstance(error.__cause__, JobLoadError):  # over a limit (worker.gate.limits): it says which
            return error.__cause__
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
    """Fail a job whose hash rq could not read back, by id: there is no `Job` to hand to rq.

    An id rq would not accept (``"*"``, ``"a b"``, ``"x:y"``) is failed under that raw id by
    `worker.gate.job_ids.fail_invalid`, its hash expiring with its entry in the failed registry."""
    if not job_ids.is_valid_job_id(job_id):
        error: JobLoadError = job_ids.fail_invalid(worker.connection, queue, job_id, f"queue {queue.name!r}")
        logger.error("%s; moved to the failed registry of %r", error, queue.name)
        return error
    error = JobLoadError(job_id, "its stored job hash", cause)
    error.__cause__ = cause
    fail_at_once(worker, job_id, queue, error)
    logger.error(
        "Job %s: cannot load its stored job hash (%s: %s); moved to the failed registry of %r",
        job_id,
        type(cause).__name__,
        cause,
        queue.name,
    )
    return error


def fail_refused(worker: BaseWorker, job_id: str, queue: Queue, error: JobLoadError) -> None:
    """Fail a job the worker's gate or limits refused, as an unreadable one: no retry, no callback,
    no import."""
    fail_at_once(worker, job_id, queue, error)
    logger.error("%s; moved to the failed registry of %r", error, queue.name)


def fail_at_once(worker: BaseWorker, job_id: str, queue: Queue, error: JobLoadError) -> None:
    """Mark a dequeued job FAILED with `error` (its traceback in ``exc_info``) in its queue's failed
    registry, in one transaction, without loading it: nothing of the job runs or is imported."""
    job_ids.record_failure(
        worker.connection, queue, worker.job_class.key_for(job_id), job_id, error, expire=False, worker=worker
    )


class JobLoading:
    """Jobs that must not run fail alone, and the worker goes on: a job hash rq cannot read back (rq
    would stop the work loop), a job over the worker's `JobLimits` and a job its `JobGate` refuses
    (checked right after the dequeue, before rq imports its function; see `worker.gate.gate`).

    `limits` bound what loading a job may cost, wherever `worker` and its queues load one (registry
    cleanup at start included). `gate` (see `gate_for`) also sets the serializer the worker and its
    queues load and save jobs with; with no gate, the worker is rq's, serializer included.
    """

    def __init__(self, worker: BaseWorker, gate: JobGate | None, limits: JobLimits) -> None:
        self.worker = worker
        self.gate = gate
        worker.job_class = bounded_job_class(worker.job_class, limits)
        for queue in worker.queues:
            queue.job_class = bounded_job_class(queue.job_class, limits)
        if gate is not None:
            # Whatever reads jobs later (registries, recovery, the prefork horse) imports nothing the
            # gate refuses; queues built by the caller (django-rq's get_worker) included.
            worker.job_class = gated_job_class(worker.job_class, gate)
            for queue in worker.queues:
                queue.serializer = worker.serializer
                queue.job_class = gated_job_class(queue.job_class, gate)

    def dequeue(self, dequeue: Callable[[], Dequeued]) -> Dequeued:
        """The next job `dequeue()` finds that may run; each that may not is failed on the way."""
        worker = self.worker
        while True:
            try:
                found = dequeue()
            except UnicodeDecodeError as exc:
                # rq's own pop decodes the popped id as text: a non-UTF-8 id (no job rq can load) would
                # end the work loop. Left in the intermediate list (one queue), it is failed by the rescue.
                worker.log.error(
                    "Worker %s: popped a job id that is not UTF-8 (%r); no job rq can load, skipped",
                    worker.name,
                    exc.object[:100],
                )
                continue
            except Exception as exc:
                job_id, queue = getattr(exc, "job_id", None), getattr(exc, "queue", None)
                if isinstance(exc, redis.RedisError) or not isinstance(job_id, str) or queue is None:
                    raise
                fail_unreadable(worker, job_id, queue, exc)
                continue
            refused = self._refusal(found)
            if refused is None:
                return found
            fail_refused(worker, refused[0].id, refused[1], refused[2])

    def _refusal(self, found: tuple[Job, Queue] | None) -> tuple[Job, Queue, JobLoadError] | None:
        if found is None:
            return None
        too_large = unloadable(found[0])
        if too_large is not None:
            return (*found, too_large)
        gate = self.gate
        if gate is None or gate.is_open:
            return None
        error = gate.refusal(found[0])
        return None if error is None else (*found, error)


def gate_for(job_gate: JobGate | None, kwargs: dict[str, Any]) -> JobGate | None:
    """The gate a worker built with `job_gate` uses (else the one `install_job_gate` installed, if
    any); sets the serializer in the worker's constructor `kwargs` to the gate's."""
    gate = job_gate if job_gate is not None else installed_job_gate()
    if gate is not None:
        kwargs["serializer"] = gate.serializer  # django-rq's rqworker passes pickle explicitly
    return gate


def limits_for(job_limits: JobLimits | None) -> JobLimits:
    """The limits a worker built with `job_limits` uses (else `install_job_limits`'s, else the defaults)."""
    return job_limits or installed_job_limits()
