"""rq's private names: every underscored attribute or method of an rq object that we use, spelt here.

rq's public API does not let a worker add to its job-start transaction, pass its cached state, or
find out that a job was stopped by `rq stop`; our worker needs all three. Each such use is a function
of this module. `worker.rq_compat` checks at import that the installed rq has all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.worker import base as rq_worker_base

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

# -- the worker's own attributes ------------------------------------------------------------------


def cached_state(worker: BaseWorker) -> str:
    """The state rq last wrote for `worker` (rq keeps it to skip nothing; we use it to skip repeats)."""
    state: str = worker._state
    return state


def note_state(worker: BaseWorker, state: str) -> None:
    """Tell rq's worker that `state` is written (by a script or a pipeline it did not see)."""
    worker._state = state


def stopped_job_id(worker: BaseWorker) -> str | None:
    """The id of the job `rq stop` (or the dashboard's "stop") stopped on this worker, if any."""
    job_id: str | None = worker._stopped_job_id
    return job_id


def set_horse_pid(worker: BaseWorker, pid: int) -> None:
    """The process rq's `kill_horse`, stop-job command and cold shutdown act on (0: none)."""
    worker._horse_pid = pid


def become_horse(worker: BaseWorker) -> None:
    """In a work horse forked by the prefork worker: rq's worker object now speaks for the horse."""
    worker._is_horse = True
    worker._horse_pid = 0


def handle_stopped_job(worker: BaseWorker, job: Job, queue: Queue, execution: Execution) -> None:
    """rq's forking worker's handling of a job `rq stop` stopped (its horse was killed for it)."""
    worker._handle_stopped_job(job, queue, execution)  # type: ignore[attr-defined]  # rq.Worker's


def release_slot_safely(worker: BaseWorker, job: Job) -> None:
    """rq's release of `job`'s rate-limit slot, logging (not raising) an error."""
    worker._release_slot_safely(job)


def stop_requested(worker: BaseWorker) -> bool:
    """Whether a warm shutdown was asked for."""
    return bool(worker._stop_requested)


def shutdown_requested_at(worker: BaseWorker) -> Any:
    """When the first shutdown signal arrived (a datetime), or None."""
    return worker._shutdown_requested_date


def reorder(worker: BaseWorker, queues: list[Queue]) -> None:
    """The queues rq's dequeue goes through, in order (after `queues` were rebound to another client)."""
    worker._ordered_queues = queues


def ordered_queues(worker: BaseWorker) -> list[Queue]:
    """The queues in the order rq's next dequeue takes them."""
    queues: list[Queue] = worker._ordered_queues
    return queues


def exception_handlers(worker: BaseWorker) -> list[Any]:
    """rq's list of the worker's exception handlers (its registry cleanup takes them)."""
    handlers: list[Any] = worker._exc_handlers
    return handlers


def signal_name(signum: int) -> str:
    """rq's name for a signal number, as its log lines print it."""
    return str(rq_worker_base.signal_name(signum))  # type: ignore[no-untyped-call]  # rq leaves it unannotated


# -- jobs, queues, executions ---------------------------------------------------------------------


def has_callbacks(job: Job) -> bool:
    """Whether `job` names a success or failure callback (read without importing either)."""
    return job._success_callback_name is not None or job._failure_callback_name is not None


def callback_names(job: Job) -> dict[str, str | None]:
    """The dotted paths of `job`'s callbacks, by kind, without importing them."""
    return {
        "success": job._success_callback_name,
        "failure": job._failure_callback_name,
        "stopped": job._stopped_callback_name,
    }


def return_value_in_memory(job: Job) -> Any:
    """What `job`'s function returned, as rq keeps it on the job before saving it (None before)."""
    return job._result


def stored_exc_info(job: Job) -> str | None:
    """The traceback rq stored with `job`'s last failure, as read with the job."""
    exc_info: str | None = job._exc_info
    return exc_info


def queue_failure(job: Job, exc_string: str, pipeline: Pipeline[Any], *, worker_name: str) -> None:
    """rq's failure bookkeeping for `job` (failed registry, failure Result), queued on `pipeline`."""
    job._handle_failure(exc_string, pipeline, worker_name=worker_name)


def enqueue_at_front(queue: Queue, job: Job, pipeline: Pipeline[Any]) -> None:
    """Put an existing `job` back at the front of `queue`, as rq's requeue does, on `pipeline`."""
    queue._enqueue_job(job, pipeline=pipeline, at_front=True)


def queue_is_async(queue: Queue) -> bool:
    """Whether `queue` enqueues for workers (rq's `is_async=False` runs jobs at once)."""
    return bool(queue._is_async)


def queue_default_timeout(queue: Queue) -> int:
    """The timeout, in seconds, `queue` gives a job that names none."""
    timeout: int = queue._default_timeout
    return timeout


def attach_job(execution: Execution, job: Job) -> None:
    """Give `execution` its job without a fetch (the prefork horse got the job with its order)."""
    execution._job = job


def start_scheduler_hook(worker_class: type[BaseWorker]) -> type[BaseWorker]:
    """Class decorator: rq's `_start_scheduler` (which hard-codes rq's scheduler class) calls the
    class's public `start_scheduler(burst, logging_level, date_format, log_format)` instead."""

    def _start_scheduler(self: Any, *args: Any, **kwargs: Any) -> None:
        self.start_scheduler(*args, **kwargs)

    worker_class._start_scheduler = _start_scheduler  # type: ignore[method-assign]
    return worker_class


def override_deserialize_data(job_class: type[Job], check: Callable[[Any], None]) -> None:
    """rq decodes a job's data lazily, in `Job._deserialize_data`: make `job_class` call `check(job)`
    first (it raises to refuse the data)."""
    rq_deserialize = job_class._deserialize_data

    def _deserialize_data(self: Any) -> None:
        check(self)
        rq_deserialize(self)  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    job_class._deserialize_data = _deserialize_data  # type: ignore[method-assign]


def unreadable_meta(job: Job) -> bytes | None:
    """The raw meta rq could not decode when it read `job` (kept by rq for later), if any."""
    raw: bytes | None = job._unreadable_meta
    return raw


def set_stored_exc_info(job: Job, exc_info: str | None) -> None:
    """Set the traceback rq keeps with `job`'s last failure (as `Job.restore` would)."""
    job._exc_info = exc_info


def scheduler_locks(scheduler: Any) -> list[str]:
    """The queues whose scheduler lock rq's scheduler holds."""
    names: list[str] = scheduler._acquired_locks
    return names


def set_scheduler_registries(scheduler: Any, registries: list[Any]) -> None:
    """The scheduled-job registries rq's scheduler moves due jobs from."""
    scheduler._scheduled_job_registries = registries
