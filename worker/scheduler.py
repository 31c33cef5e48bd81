"""Precise retries, Redis side: schedule a retry on the Redis clock, promote due retries atomically.

A retry lives in two sorted sets with the same score, its due time in float seconds on the Redis
server's clock: rq's `ScheduledJobRegistry` of its queue (so rq and django-rq show the job as
scheduled) and our index `keys.retries(queue)` (so our promoter knows which entries are ours and
rq's scheduler can be told to leave them alone). Both scripts read `TIME`, so workers on several
machines agree on when a retry is due whatever their own clocks say.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus

from worker import keys

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline
    from rq.queue import Queue

SCRIPTS_DIR = Path(__file__).with_name("scripts")
#: Most retries one promotion call moves per queue; the promoter calls again at once when more are due.
PROMOTE_BATCH = 500


@functools.cache
def script_text(name: str) -> str:
    """The text of `worker/scripts/<name>`."""
    return (SCRIPTS_DIR / name).read_text()


@dataclass(frozen=True)
class Promotion:
    """What one promotion call did. Times are float seconds on the Redis clock."""

    moved: int
    next_due: float | None
    server_time: float

    @property
    def wait(self) -> float | None:
        """Seconds until the next retry is due (<= 0: due now), None when none is pending."""
        return None if self.next_due is None else self.next_due - self.server_time


def schedule_retry(job: Job, queue: Queue, delay: float, pipeline: Pipeline[Any]) -> None:
    """Queue on `pipeline` the commands that make `job` a retry due `delay` seconds from now.

    "Now" is the Redis server's clock when the pipeline runs. The whole job hash is saved (meta
    included, so append the attempt record to `job.meta` first) with status SCHEDULED, as rq's
    `Queue.schedule_job` does; the id goes to rq's scheduled registry and our index, and the due
    time is published on `keys.RETRY_SCHEDULED_CHANNEL` to wake promoters. No extra round trip: the
    script is sent with EVAL inside the caller's pipeline (Redis caches it by its SHA).

    A rate-limited job is not indexed: its retry is left to rq's scheduler (`--with-scheduler`),
    which enqueues through the rate limiter, at rq's one-second precision.
    """
    job.set_status(JobStatus.SCHEDULED, pipeline=pipeline)
    pipeline.sadd(queue.redis_queues_keys, queue.key)
    job.save(pipeline=pipeline)
    job.cleanup(ttl=job.ttl, pipeline=pipeline)
    pipeline.eval(
        script_text("schedule_retry.lua"),
        2,
        queue.scheduled_job_registry.key,
        keys.retries(queue.name),
        job.id,
        repr(float(delay)),
        keys.RETRY_SCHEDULED_CHANNEL,
        "0" if job.has_rate_limit else "1",
    )


def promote_due(
    connection: Redis[Any], queues: Sequence[Queue], *, job_class: type[Job] = Job, batch: int = PROMOTE_BATCH
) -> Promotion:
    """Move every due retry of `queues` onto its queue (one atomic script, one round trip).

    A retry moves only if this call removed it from rq's scheduled registry, so concurrent callers
    never push one twice, and never before its due time: both are judged by the Redis clock.
    """
    script_keys: list[str] = []
    for queue in queues:
        script_keys += [keys.retries(queue.name), queue.scheduled_job_registry.key, queue.key]
    script = _registered(connection)
    reply: list[Any] = script(keys=script_keys, args=[job_class.redis_job_namespace_prefix, batch])
    moved, next_due, seconds, micros = reply
    return Promotion(
        moved=int(moved),
        next_due=None if next_due is None else float(next_due),
        server_time=int(seconds) + int(micros) / 1_000_000,
    )


def pending_retries(connection: Redis[Any], queue_name: str) -> dict[str, float]:
    """Our pending retries of `queue_name`: job id to due time (Redis clock, float seconds)."""
    entries = connection.zrange(keys.retries(queue_name), 0, -1, withscores=True)
    return {
        (job_id.decode() if isinstance(job_id, bytes) else str(job_id)): float(score)
        for job_id, score in entries
    }


def _registered(connection: Redis[Any]) -> Any:
    # redis-py's Script runs EVALSHA and reloads the script on NOSCRIPT (e.g. after a server restart).
    return connection.register_script(script_text("promote_retries.lua"))
