"""The dequeue between two jobs in one Redis round trip, when a job is waiting.

Between two jobs rq's worker loop writes its idle state, heartbeats (three commands, three round
trips) and checks for `rq suspend` (a pipeline), then heartbeats again, pops a job id and fetches
the job: 9 round trips. `OneTripDequeue` sends all of it as one script
(`scripts/dequeue_job.lua`), which never blocks: with every queue empty, or workers suspended, rq's
own check and blocking dequeue run as before, and so they do whenever the script cannot tell that
rq would do the same (a queue or job class that overrides rq's dequeue or fetch, or a test that
patches them; registry maintenance due, which rq runs before the pop; Redis unreachable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ConnectionError, TimeoutError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.logutils import blue, green
from rq.queue import Queue
from rq.utils import as_text, now
from rq.worker import BaseWorker, WorkerStatus

from worker.bookkeeping import Dequeued
from worker.gate import job_ids
from worker.gate.limits import BoundedJob
from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.gate.loading's

# rq's own dequeue and fetch: the script does what they do, and only that, so it stands aside
# for a queue or job class that overrides them (or a test that patches them). The bounded restore of
# `worker.gate.limits` is rq's within limits: the script's reply goes through it as rq's would.
_RQ_DEQUEUE = (Queue.__dict__["dequeue_any"], Queue.__dict__["lmove"], Queue.__dict__["lpop"])
_RQ_FETCH = (Job.__dict__["fetch"], Job.__dict__["refresh"])
_RQ_RESTORES = (Job.__dict__["restore"], BoundedJob.__dict__["restore"])


def uses_rq_dequeue(queue_class: type[Queue], job_class: type[Job]) -> bool:
    """Whether `queue_class` and `job_class` dequeue and fetch jobs with rq's own code."""
    dequeue = tuple(class_attr(queue_class, name) for name in ("dequeue_any", "lmove", "lpop"))
    fetch = tuple(class_attr(job_class, name) for name in ("fetch", "refresh"))
    return dequeue == _RQ_DEQUEUE and fetch == _RQ_FETCH and class_attr(job_class, "restore") in _RQ_RESTORES


def class_attr(cls: type, name: str) -> object:
    """`name` as `cls` defines or inherits it (the function, not a bound method)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def drop_refused_id(connection: Redis[Any], queue: Queue, raw_id: bytes) -> None:
    """Take `raw_id`, an id rq refuses with no job hash (nothing to fail, nothing to run), off `queue`'s
    intermediate list, with a warning naming it: ``"<job_id>:x"`` is not job ``<job_id>``."""
    rq_layout.drop_from_intermediate(connection, queue, raw_id)
    logger.warning(
        "Job %s: invalid job id popped from queue %r (%s) and no job hash under it; dropped",
        job_ids.id_repr(job_ids.as_text(raw_id)),
        queue.name,
        job_ids.RQ_RULE,
    )


class OneTripDequeue:
    """rq's idle state, heartbeat, suspension check, pop and job fetch in one round trip, for the
    bookkeeping strategies of `worker.shortcuts` (see the module docstring)."""

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker
        self._script: Script | None = None
        #: `burst` of the suspension check rq's loop made just before dequeueing, left to the dequeue.
        self._suspension_burst: bool | None = None

    def check_for_suspension(self, burst: bool, rq: Callable[[bool], None]) -> None:
        if self._can_pop_in_one_trip():
            # rq's loop dequeues right after this check: the dequeue script makes it, same round trip.
            self._suspension_burst = burst
            return
        rq(burst)

    def forget_suspension_check(self) -> None:
        """A check left by a loop that stopped before dequeueing."""
        self._suspension_burst = None

    def _can_pop_in_one_trip(self) -> bool:
        worker = self.worker
        return not worker.should_run_maintenance_tasks and uses_rq_dequeue(
            worker.queue_class, worker.job_class
        )

    def dequeue(
        self,
        timeout: int | None,
        max_idle_time: int | None,
        rq: Callable[[int | None, int | None], Dequeued],
        rq_check_for_suspension: Callable[[bool], None],
    ) -> Dequeued:
        worker = self.worker
        burst, self._suspension_burst = self._suspension_burst, None
        found: tuple[Job, Queue] | Literal["suspended", "dropped"] | None = None
        if self._can_pop_in_one_trip():
            try:
                found = self._pop_waiting_job(check_suspension=burst is not None)
                while found == "dropped":  # a refused id with no hash: the next one
                    found = self._pop_waiting_job(check_suspension=False)
            except (ConnectionError, TimeoutError):
                found = None  # rq's check and loop below wait for Redis, as they would have
            else:
                burst = burst if found == "suspended" else None
        if burst is not None:  # suspended, or not known: rq's own check, then what its loop does next
            rq_check_for_suspension(burst)
            if rq_private.stop_requested(worker):
                worker.log.info("Worker %s: stopping on request", worker.name)
                raise StopRequested()
        if found is None or found == "suspended" or found == "dropped":
            return rq(timeout, max_idle_time)
        job, queue = found
        log_dequeued(worker, job, queue)
        return job, queue

    def _pop_waiting_job(
        self, *, check_suspension: bool
    ) -> tuple[Job, Queue] | Literal["suspended", "dropped"] | None:
        """rq's idle state, heartbeat, suspension check (if asked), non-blocking pop and job fetch, in
        one script; None if no job waits, "dropped" if it popped an id rq refuses that has no hash."""
        worker = self.worker
        if self._script is None:
            self._script = worker.connection.register_script(rq_layout.script_text("dequeue_job.lua"))
        beat_at = now()
        reply = rq_layout.pop_waiting_job(
            self._script,
            worker,
            rq_private.ordered_queues(worker),
            beat_at,
            check_suspension=check_suspension,
        )
        rq_private.note_state(worker, WorkerStatus.IDLE)
        worker.last_heartbeat = beat_at
        if reply == -1:
            return "suspended"
        if not reply:
            return None
        queue_key, job_id, *flat = reply
        queue = worker.queue_class.from_queue_key(
            as_text(queue_key),
            connection=worker.connection,
            job_class=worker.job_class,
            serializer=worker.serializer,
            death_penalty_class=worker.death_penalty_class,
        )
        if not flat and not job_ids.is_valid_job_id(job_ids.as_text(job_id)):
            drop_refused_id(worker.connection, queue, job_id)
            return "dropped"
        job_id = as_text(job_id)
        try:
            # The raw id, not rq's parse_job_id: "x:y" would become job "x", whose start never takes
            # "x:y" off the intermediate list. rq refuses such an id here; worker.gate.loading fails it.
            job = worker.job_class(job_id, connection=worker.connection, serializer=worker.serializer)
            job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
        except Exception as exc:
            # As rq's `Queue._fetch_dequeued_job`: say which job and queue (worker.gate.loading reads them).
            exc.job_id = job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue


def log_dequeued(worker: BaseWorker, job: Job, queue: Queue) -> None:
    """What rq's dequeue does and logs once it has a job (procline, queue order, the log line)."""
    worker.procline("Listening on " + ",".join(worker.queue_names()))  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    worker.reorder_queues(reference_queue=queue)
    worker.log.debug("Worker %s: dequeued job %s from %s", worker.name, blue(job.id), green(queue.name))
    job.redis_server_version = worker.get_redis_server_version()  # type: ignore[no-untyped-call]  # rq: untyped
    if worker.log_job_description:
        worker.log.info(
            "Worker %s: %s: %s (%s)", worker.name, green(queue.name), blue(job.description), job.id
        )
    else:
        worker.log.info("Worker %s: %s: %s", worker.name, green(queue.name), job.id)
