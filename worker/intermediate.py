"""Rescue of jobs that a worker dequeued and died before starting.

rq 3 dequeues from a single queue with LMOVE, from `rq:queue:<name>` to the intermediate list
`rq:queue:<name>:intermediate`, and only then starts the job (started registry, execution, and
our lease, in one transaction that also takes the id off the intermediate list). A worker killed
between the two leaves the id in the intermediate list with no lease and no started-registry
entry: lease recovery (`worker.recovery`) never sees it, and rq's `IntermediateQueue.cleanup`
fails it only from its 10-minute maintenance pass, after two sightings a minute apart.
Our forking, simple and prefork workers all dequeue a waiting job through that list
(`scripts/dequeue_job.lua` makes the same LMOVE, for a worker of several queues too); an idle
worker blocked in rq's own pop goes through it only when it serves one queue (BLMOVE): over several
queues rq's BLPOP takes the job outright, and a worker killed before starting that one loses it.

Every recovery scan runs `scripts/rescue_intermediate.lua` once per queue: an id that is neither
in the started registry nor holds a lease is noted in rq's own first-seen key (Redis clock, so rq's
cleanup and ours count from the same sighting), and once it has been there `lease_ttl +
fence_margin` seconds, the one worker whose LREM removed it puts it back at the front of its
queue, where the next dequeue takes it. It never started, so no retry attempt is used. An id rq
would not accept as a job id (``"x:y"``, ``"*"``, ``"a b"``: `worker.job_ids`) is never put back: it
is failed at once under its raw id if a hash is stored there, else dropped with a warning naming
it. Each call does bounded work whatever junk Redis holds (see the
script): a scan blocks Redis for milliseconds, not seconds, with 100,000 junk ids in the list.

The threshold leaves a live worker time to start what it dequeued, even one slowed by a Redis
outage shorter than a lease. Residual risk: a worker stalled between its LMOVE and its start
transaction for longer than `lease_ttl + fence_margin` (frozen, or cut off from Redis that long)
still starts the job when it comes back, and the job may then run twice, once there and once from
the queue. The start transaction deletes the job's first-seen key (`RecoveryMixin`), so a job id
that comes back through the intermediate list later (a retry keeps its id) is timed afresh, not
from a stale sighting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rq import worker_registration
from rq.executions import ExecutionRegistry
from rq.registry import clean_registries
from rq.utils import now
from rq.worker import BaseWorker

from worker import job_ids, leases
from worker.connection import REDIS_DOWN

if TYPE_CHECKING:
    from redis import Redis
    from rq.queue import Queue

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.loading's

SCRIPT = "rescue_intermediate.lua"
#: Seconds a first-seen key lives, as rq sets it (`IntermediateQueue.set_first_seen`).
FIRST_SEEN_SECONDS = 24 * 3600
#: Most ids of one intermediate list looked at per scan; the next scan takes the next ones.
SCAN_BATCH = 100
#: Most executions of one job (its newest) the scan looks at to tell whether it started.
EXECUTIONS_LOOKED_AT = 16
#: Most entries of a queue compared when the scan looks for a stuck id there before putting it back.
QUEUE_ENTRIES_LOOKED_AT = 1000


def first_seen_key(intermediate_key: str, job_id: str) -> str:
    """rq's key for when a job was first seen stuck in `intermediate_key` (`IntermediateQueue`)."""
    return f"{intermediate_key}:first_seen:{job_id}"


@dataclass
class Rescued:
    """What one scan of an intermediate list did."""

    requeued: list[str] = field(default_factory=list)  # put back at the front of the queue
    removed: list[str] = field(default_factory=list)  # taken off the list only: no longer queued
    gone: list[str] = field(default_factory=list)  # taken off the list: the job hash was gone
    failed: list[str] = field(default_factory=list)  # ids rq would not accept: failed, not put back


def rescue_stuck(connection: Redis[Any], queue: Queue, *, after: float, limit: int = SCAN_BATCH) -> Rescued:
    """Put back on `queue` the jobs stuck in its intermediate list for at least `after` seconds."""
    script = connection.register_script(leases.script_text(SCRIPT))
    executions_prefix = ExecutionRegistry.key_template.format("")
    reply = script(
        keys=[
            queue.key,
            queue.intermediate_queue_key,
            queue.started_job_registry.key,
            leases.leases(queue.name),
        ],
        args=[
            repr(float(after)),
            queue.job_class.redis_job_namespace_prefix,
            executions_prefix,
            FIRST_SEEN_SECONDS,
            limit,
            EXECUTIONS_LOOKED_AT,
            QUEUE_ENTRIES_LOOKED_AT,
        ],
    )
    requeued, removed, gone = ([job_ids.as_text(item) for item in part] for part in reply[:3])
    for job_id in gone:
        if not job_ids.is_valid_job_id(job_id):  # "<job_id>:x" pushed with no hash: not job <job_id>
            logger.warning(
                "Job %s: invalid job id in the intermediate list of %r (%s), no job hash; dropped",
                job_ids.id_repr(job_id),
                queue.name,
                job_ids.RQ_RULE,
            )
    failed = []
    for raw in reply[3]:  # bytes, kept as they are: a forged id need not even be UTF-8
        error = job_ids.fail_invalid(connection, queue, raw, f"the intermediate list of {queue.name!r}")
        logger.error("%s; moved to the failed registry of %r", error, queue.name)
        failed.append(job_ids.as_text(raw))
    return Rescued(requeued=requeued, removed=removed, gone=gone, failed=failed)


class IntermediateCleanupMixin(BaseWorker):
    """rq's registry maintenance without rq's `IntermediateQueue.cleanup`, which `rescue_stuck` (every
    recovery scan) replaces: rq's builds a `Job` for every id in the list, so one id rq refuses
    (``"*"``, pushed by whoever can write to Redis) raised out of the work loop and stopped the
    worker; it also reads the whole started registry for each id, and fails a stuck job a minute
    after the rescue would have put it back.

    The same ids in the started or ready registry made rq's own registry cleanup raise, at start and
    every maintenance pass: `job_ids.purge_registries` fails them first, and anything else rq's
    maintenance of one queue raises is logged with the queue's name; the worker goes on (Redis
    being unreachable still goes to `worker.connection`, which waits for it)."""

    def clean_registries(self) -> None:
        # rq's `BaseWorker.clean_registries`, less its last step.
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                self.log.info("Worker %s: cleaning registries for queue: %s", self.name, queue.name)
                try:
                    self._clean_queue_registries(queue)
                except REDIS_DOWN:
                    raise
                except Exception:
                    self.log.exception(
                        "Queue %s: registry maintenance failed; worker %s goes on", queue.name, self.name
                    )
                queue.release_maintenance_lock()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        self.last_cleaned_at = now()  # type: ignore[assignment]  # rq annotates it None, sets datetimes

    def clean_group_registries(self) -> None:
        # rq's group cleanup decodes each member of each group as text: one member that is not UTF-8
        # raised out of the maintenance and ended the worker. rq's lock expires by itself.
        try:
            super().clean_group_registries()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        except REDIS_DOWN:
            raise
        except Exception:
            self.log.exception("Worker %s: group registry maintenance failed; it goes on", self.name)

    def _clean_queue_registries(self, queue: Queue) -> None:
        for error in job_ids.purge_registries(self.connection, queue):
            self.log.error("%s; moved to the failed registry of %r", error, queue.name)
        clean_registries(queue, self._exc_handlers)  # rq's private list of exception handlers
        worker_registration.clean_worker_registry(queue)
