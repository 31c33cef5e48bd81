"""Precise retries, Redis side: schedule a retry on the Redis clock, promote due retries atomically.

A retry lives in two sorted sets with the same score, its due time in float seconds on the Redis
server's clock: rq's `ScheduledJobRegistry` of its queue (so rq and django-rq show the job as
scheduled) and our index `keys.retries(queue)` (so our promoters know which entries are ours and
rq's scheduler can be told to leave them alone). Both scripts read `TIME`, so workers on several
machines agree on when a retry is due whatever their own clocks say. One promoter per queue is on
duty (a lease renewed by each promotion); the others stand in only when it is late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus
from rq.utils import as_text

from worker import keys
from worker.lua import script_text
from worker.retries.attempts import utcnow
from worker.rq_compat import layout as rq_layout

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline
    from rq.queue import Queue

#: Most retries one promotion call moves per queue; the promoter calls again at once when more are due.
PROMOTE_BATCH = 500


@dataclass(frozen=True)
class Promotion:
    """What one promotion call did and saw. Times are float seconds on the Redis clock."""

    moved: int
    server_time: float
    #: Per queue, in the order given: the earliest pending retry's due time, None when none is pending.
    queue_due: tuple[float | None, ...] = ()
    #: Per queue, in the order given: True where the caller is on duty (holds the queue's lease).
    duty: tuple[bool, ...] = ()

    @property
    def next_due(self) -> float | None:
        """The earliest pending retry over all the queues, None when none is pending."""
        return min((due for due in self.queue_due if due is not None), default=None)


def schedule_retry(
    job: Job, queue: Queue, delay: float, pipeline: Pipeline[Any], *, failed_at: datetime | None = None
) -> None:
    """Queue on `pipeline` the commands that make `job` a retry due `delay` seconds after `failed_at`.

    The due time is set on the Redis clock when the pipeline runs: `delay` minus the time that has
    passed since `failed_at` (a duration on this machine's clock, so clocks need not agree), from
    Redis's now; without `failed_at`, `delay` from Redis's now. The whole job hash is saved (meta
    included, so append the attempt record to `job.meta` first) with status SCHEDULED, as rq's
    `Queue.schedule_job` does; the id goes to rq's scheduled registry and our index, and the due
    time is published on `keys.RETRY_SCHEDULED_CHANNEL` to wake promoters. No extra round trip: the
    script is sent with EVAL inside the caller's pipeline (Redis caches it by its SHA).

    A rate-limited job is not indexed: its retry is left to rq's scheduler (`--with-scheduler`),
    which enqueues through the rate limiter, at rq's one-second precision.
    """
    if failed_at is not None:
        if failed_at.tzinfo is None:
            failed_at = failed_at.replace(tzinfo=timezone.utc)
        delay = max(0.0, delay - max(0.0, (utcnow() - failed_at).total_seconds()))
    job.set_status(JobStatus.SCHEDULED, pipeline=pipeline)
    pipeline.sadd(queue.redis_queues_keys, queue.key)
    job.save(pipeline=pipeline)
    job.cleanup(ttl=job.ttl, pipeline=pipeline)
    pipeline.eval(
        rq_layout.script_text("schedule_retry.lua"),
        2,
        queue.scheduled_job_registry.key,
        keys.retries(queue.name),
        job.id,
        repr(float(delay)),
        keys.RETRY_SCHEDULED_CHANNEL,
        "0" if job.has_rate_limit else "1",
        queue.name,
    )


def promote_due(
    connection: Redis[Any],
    queues: Sequence[Queue],
    *,
    job_class: type[Job] = Job,
    owner: str = "",
    lease: float = 0.0,
    grace: float = 0.0,
    batch: int = PROMOTE_BATCH,
) -> Promotion:
    """Move the due retries of `queues` onto their queues (one atomic script, one round trip).

    A retry moves only if this call removed it from rq's scheduled registry, so concurrent callers
    never push one twice, and never before its due time: both are judged by the Redis clock.
    Without `owner`, every due retry moves. With it, `owner` is on duty for the queues whose lease it
    holds or can take (for `lease` seconds) and moves their due retries; on the other queues it moves
    only retries overdue by `grace` seconds, standing in for a promoter on duty that stalled.
    """
    script_keys: list[str] = []
    for queue in queues:
        script_keys += [
            keys.retries(queue.name),
            queue.scheduled_job_registry.key,
            queue.key,
            keys.promoter_lease(queue.name),
        ]
    args = [
        job_class.redis_job_namespace_prefix,
        batch,
        owner,
        max(1, int(lease * 1000)),
        repr(float(grace)),
        keys.RETRY_SCHEDULED_CHANNEL,
        *(queue.name for queue in queues),
    ]
    moved, seconds, micros, duty, *queue_due = connection.register_script(
        rq_layout.script_text("promote_retries.lua")
    )(keys=script_keys, args=args)
    return Promotion(
        moved=int(moved),
        server_time=int(seconds) + int(micros) / 1_000_000,
        queue_due=tuple(float(due) if as_text(due) else None for due in queue_due),
        duty=tuple(flag == "1" for flag in as_text(duty)),
    )


def release_leases(connection: Redis[Any], queues: Sequence[Queue], *, owner: str) -> int:
    """Give up `owner`'s promoter leases on `queues`, telling the other promoters; how many it held."""
    script = connection.register_script(script_text("release_leases.lua"))
    lease_keys = [keys.promoter_lease(queue.name) for queue in queues]
    args = [owner, keys.RETRY_SCHEDULED_CHANNEL, *(queue.name for queue in queues)]
    return int(script(keys=lease_keys, args=args))


def pending_retries(connection: Redis[Any], queue_name: str) -> dict[str, float]:
    """Our pending retries of `queue_name`: job id to due time (Redis clock, float seconds)."""
    entries = connection.zrange(keys.retries(queue_name), 0, -1, withscores=True)
    return {
        (job_id.decode() if isinstance(job_id, bytes) else str(job_id)): float(score)
        for job_id, score in entries
    }
