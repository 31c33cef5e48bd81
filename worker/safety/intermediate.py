"""Rescue of jobs that a worker dequeued and died before starting.

rq 3 dequeues from a single queue with LMOVE, from `rq:queue:<name>` to the intermediate list
`rq:queue:<name>:intermediate`, and only then starts the job (started registry, execution, and
our lease, in one transaction that also takes the id off the intermediate list). A worker killed
between the two leaves the id in the intermediate list with no lease and no started-registry
entry: lease recovery (`worker.safety.recovery`) never sees it, and rq's `IntermediateQueue.cleanup`
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
would not accept as a job id (``"x:y"``, ``"*"``, ``"a b"``: `worker.gate.job_ids`) is never put back: it
is failed at once under its raw id if a hash is stored there, else dropped with a warning naming
it. Each call does bounded work whatever junk Redis holds (see the
script): a scan blocks Redis for milliseconds, not seconds, with 100,000 junk ids in the list.

The threshold leaves a live worker time to start what it dequeued, even one slowed by a Redis
outage shorter than a lease. Residual risk: a worker stalled between its LMOVE and its start
transaction for longer than `lease_ttl + fence_margin` (frozen, or cut off from Redis that long)
still starts the job when it comes back, and the job may then run twice, once there and once from
the queue. The start transaction deletes the job's first-seen key (`LeaseGuard.queue_lease`), so a job id
that comes back through the intermediate list later (a retry keeps its id) is timed afresh, not
from a stale sighting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rq.executions import ExecutionRegistry

from worker.gate import job_ids
from worker.rq_compat import layout as rq_layout
from worker.safety import leases

if TYPE_CHECKING:
    from redis import Redis
    from rq.queue import Queue

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.gate.loading's

SCRIPT = "rescue_intermediate.lua"
#: Seconds a first-seen key lives, as rq sets it (`IntermediateQueue.set_first_seen`).
FIRST_SEEN_SECONDS = 24 * 3600
#: Most ids of one intermediate list looked at per scan; the next scan takes the next ones.
SCAN_BATCH = 100
#: Most executions of one job (its newest) the scan looks at to tell whether it started.
EXECUTIONS_LOOKED_AT = 16
#: Most entries of a queue compared when the scan looks for a stuck id there before putting it back.
QUEUE_ENTRIES_LOOKED_AT = 1000


@dataclass
class Rescued:
    """What one scan of an intermediate list did."""

    requeued: list[str] = field(default_factory=list)  # put back at the front of the queue
    removed: list[str] = field(default_factory=list)  # taken off the list only: no longer queued
    gone: list[str] = field(default_factory=list)  # taken off the list: the job hash was gone
    failed: list[str] = field(default_factory=list)  # ids rq would not accept: failed, not put back


def rescue_stuck(connection: Redis[Any], queue: Queue, *, after: float, limit: int = SCAN_BATCH) -> Rescued:
    """Put back on `queue` the jobs stuck in its intermediate list for at least `after` seconds."""
    script = connection.register_script(rq_layout.script_text(SCRIPT))
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
