"""The dequeue between two jobs in one Redis round trip, when a job is waiting.

Between two jobs rq's worker loop writes its idle state, heartbeats (three commands, three round
trips) and checks for `rq suspend` (a pipeline), then heartbeats again, pops a job id and fetches
the job: 9 round trips. `OneTripDequeueMixin` sends all of it as one script
(`scripts/dequeue_job.lua`), which never blocks: with every queue empty, or workers suspended, rq's
own check and blocking dequeue run as before, and so they do whenever the script cannot tell that
rq would do the same (a queue or job class that overrides rq's dequeue or fetch, or a test that
patches them; registry maintenance due, which rq runs before the pop; Redis unreachable).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ConnectionError, TimeoutError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.logutils import blue, green
from rq.queue import Queue
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import as_text, now, utcformat
from rq.worker import BaseWorker, WorkerStatus

from worker import job_ids
from worker.leases import script_text
from worker.limits import BoundedJob

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.loading's

# rq's own dequeue and fetch: the script does what they do, and only that, so it stands aside
# for a queue or job class that overrides them (or a test that patches them). The bounded restore of
# `worker.limits` is rq's within limits: the script's reply goes through it as rq's would.
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
    connection.lrem(queue.intermediate_queue_key, 1, raw_id)
    logger.warning(
        "Job %s: invalid job id popped from queue %r (%s) and no job hash under it; dropped",
        job_ids.id_repr(job_ids.as_text(raw_id)),
        queue.name,
        job_ids.RQ_RULE,
    )


class OneTripDequeueMixin(BaseWorker):
    """rq's idle state, heartbeat, suspension check, pop and job fetch in one round trip."""

    _dequeue_script: Script | None = None
    #: `burst` of the suspension check rq's loop made just before dequeueing, left to the dequeue.
    _suspension_burst: bool | None = None

    def check_for_suspension(self, burst: bool) -> None:
        if self._can_pop_in_one_trip():
            # rq's loop dequeues right after this check: the dequeue script makes it, same round trip.
            self._suspension_burst = burst
            return
        super().check_for_suspension(burst)

    def _can_pop_in_one_trip(self) -> bool:
        return not self.should_run_maintenance_tasks and uses_rq_dequeue(self.queue_class, self.job_class)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
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
            super().check_for_suspension(burst)
            if self._stop_requested:
                self.log.info("Worker %s: stopping on request", self.name)
                raise StopRequested()
        if found is None or found == "suspended" or found == "dropped":
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        job, queue = found
        qnames = ",".join(self.queue_names())
        self.procline("Listening on " + qnames)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        self.reorder_queues(reference_queue=queue)
        self.log.debug("Worker %s: dequeued job %s from %s", self.name, blue(job.id), green(queue.name))
        job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]  # rq: untyped
        if self.log_job_description:
            self.log.info(
                "Worker %s: %s: %s (%s)", self.name, green(queue.name), blue(job.description), job.id
            )
        else:
            self.log.info("Worker %s: %s: %s", self.name, green(queue.name), job.id)
        return job, queue

    def _pop_waiting_job(
        self, *, check_suspension: bool
    ) -> tuple[Job, Queue] | Literal["suspended", "dropped"] | None:
        """rq's idle state, heartbeat, suspension check (if asked), non-blocking pop and job fetch, in
        one script; None if no job waits, "dropped" if it popped an id rq refuses that has no hash."""
        # Each job moves into its queue's intermediate list, even from several queues (rq pops those
        # outright): a worker killed before starting it leaves it there to be put back.
        queue_keys = [
            key for queue in self._ordered_queues for key in (queue.key, queue.intermediate_queue_key)
        ]
        if self._dequeue_script is None:
            self._dequeue_script = self.connection.register_script(script_text("dequeue_job.lua"))
        beat_at = now()
        ttl = self.worker_ttl + 60
        reply = self._dequeue_script(
            keys=[self.key, self.executions_key, WORKERS_SUSPENDED, *queue_keys],
            args=[
                "lmove",
                utcformat(beat_at),
                ttl,
                self.job_class.redis_job_namespace_prefix,
                "check" if check_suspension else "",
            ],
        )
        self._state, self.last_heartbeat = WorkerStatus.IDLE, beat_at
        if reply == -1:
            return "suspended"
        if not reply:
            return None
        queue_key, job_id, *flat = reply
        queue = self.queue_class.from_queue_key(
            as_text(queue_key),
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        if not flat and not job_ids.is_valid_job_id(job_ids.as_text(job_id)):
            drop_refused_id(self.connection, queue, job_id)
            return "dropped"
        job_id = as_text(job_id)
        try:
            # The raw id, not rq's parse_job_id: "x:y" would become job "x", whose start never takes
            # "x:y" off the intermediate list. rq refuses such an id here; worker.loading fails it.
            job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
            job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
        except Exception as exc:
            # As rq's `Queue._fetch_dequeued_job`: say which job and queue (worker.loading reads them).
            exc.job_id = job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue

    def teardown(self) -> None:
        self._suspension_burst = None  # a check left by a loop that stopped before dequeueing
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
