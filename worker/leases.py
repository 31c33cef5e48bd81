"""Leases: how a worker shows it is still running a job, and how another claims the job when not.

Each running execution holds a lease in `leases(queue)`, a sorted set beside rq's started registry
(same members, `<job_id>:<execution_id>`), scored by its expiry on the Redis clock. The worker
renews it every few seconds; a lease that expires means the worker died mid-job. rq's own score in
its started registry stays as rq sets it (a minute past the last heartbeat), so rq's cleanup and
django-rq's pages, which run that cleanup, only see a job after our recovery had ample time to claim it.

A claim is a token in `claim(member)`, set only by `recover_claim.lua`. The claimer handles the job
in one transaction that WATCHes that key and replaces the token by a tombstone; a claimer that dies
first lets the claim expire, and the job is claimed again. The old worker, should it come back,
finds the claim when renewing and stops the job.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from redis.exceptions import WatchError
from rq.executions import Execution

from worker.keys import PREFIX

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCRIPTS_DIR = Path(__file__).with_name("scripts")
#: Seconds a handled claim's tombstone is kept, so a worker coming back late learns it lost the job.
TOMBSTONE_SECONDS = 3600
#: Seconds a worker's claim on its own job lasts (cold shutdown); it settles the job well within.
OWN_CLAIM_SECONDS = 30.0
#: Most expired leases one scan of a queue looks at; the next scan takes the rest.
SCAN_BATCH = 100

ClaimMode = Literal["expired", "own"]


def leases(queue_name: str) -> str:
    """Sorted set: leases of the executions running from `queue_name`, scored by expiry (Redis clock)."""
    return f"{PREFIX}:leases:{queue_name}"


def claim(member: str) -> str:
    """String: the token of the worker recovering `member` (`<job_id>:<execution_id>`), then a tombstone."""
    return f"{PREFIX}:claim:{member}"


@functools.cache
def script_text(name: str) -> str:
    return (SCRIPTS_DIR / name).read_text()


def add_lease(pipeline: Pipeline[Any], queue_name: str, member: str, ttl: float) -> None:
    """Queue on `pipeline` the start of `member`'s lease, `ttl` seconds long."""
    pipeline.eval(
        script_text("recover_lease.lua"), 2, leases(queue_name), claim(member), member, repr(ttl), "add"
    )


def renew_lease(connection: Redis[Any], queue_name: str, member: str, ttl: float) -> int:
    """Extend `member`'s lease by `ttl` seconds: 1 done, 0 no lease (job ended), -1 claimed by another."""
    script = connection.register_script(script_text("recover_lease.lua"))
    return int(script(keys=[leases(queue_name), claim(member)], args=[member, repr(ttl), "renew"]))


def drop_lease(pipeline: Pipeline[Any], queue_name: str, member: str) -> None:
    pipeline.zrem(leases(queue_name), member)


def expired_members(connection: Redis[Any], queue_name: str, limit: int = SCAN_BATCH) -> list[str]:
    """Members of `queue_name` whose lease has expired by the Redis clock (oldest first)."""
    seconds, micros = connection.time()
    found = connection.zrangebyscore(leases(queue_name), "-inf", seconds + micros / 1e6, start=0, num=limit)
    return [item.decode() if isinstance(item, bytes) else str(item) for item in found]


def try_claim(
    connection: Redis[Any],
    queue_name: str,
    started_key: str,
    member: str,
    token: str,
    ttl: float,
    mode: ClaimMode,
) -> bool:
    """Claim `member` with `token` for `ttl` seconds; see `scripts/recover_claim.lua` for the rules."""
    script = connection.register_script(script_text("recover_claim.lua"))
    reply = script(
        keys=[leases(queue_name), started_key, claim(member)], args=[member, token, repr(ttl), mode]
    )
    return int(reply) == 1


def holds_claim(pipeline: Pipeline[Any], member: str, token: str) -> bool:
    """WATCH the claim of `member` on `pipeline` (not yet in MULTI); whether `token` still holds it."""
    pipeline.watch(claim(member))
    # WATCH puts the pipeline in immediate mode: GET returns the value, whatever the stubs say.
    current: Any = pipeline.get(claim(member))
    return current is not None and bytes(current) == token.encode()


def close_claim(pipeline: Pipeline[Any], queue_name: str, member: str, token: str) -> None:
    """Queue the end of a handled claim: the lease goes, the token becomes a tombstone."""
    drop_lease(pipeline, queue_name, member)
    pipeline.set(claim(member), f"done:{token}", ex=TOMBSTONE_SECONDS)


def load_execution(connection: Redis[Any], job_id: str, execution_id: str) -> Execution | None:
    """rq's record of one execution of `job_id`; None once its hash has expired."""
    try:
        return Execution.fetch(execution_id, job_id, connection=connection)
    except ValueError:
        return None


def settle_claim(
    connection: Redis[Any],
    queue: Queue,
    member: str,
    token: str,
    *,
    job: Job | None,
    execution: Execution | None,
    handle: Callable[[Pipeline[Any]], T] | None,
) -> tuple[bool, T | None]:
    """In one transaction, if `token` still holds the claim on `member`: queue `handle(pipeline)`'s
    commands, remove the execution from rq's started registry, and close the claim.

    Returns (settled, what `handle` returned). Not settled means another worker holds the claim now.
    """
    with connection.pipeline() as pipeline:
        try:
            if not holds_claim(pipeline, member, token):
                logger.warning(
                    "Job %s: claim expired before it was settled; left to the next claimer", member
                )
                return False, None
            pipeline.multi()
            result = handle(pipeline) if handle is not None else None
            if execution is not None and job is not None:
                execution.delete(job=job, pipeline=pipeline)
            else:
                pipeline.zrem(queue.started_job_registry.key, member)
            close_claim(pipeline, queue.name, member, token)
            pipeline.execute()
        except WatchError:
            logger.warning("Job %s: claim taken over by another worker before it was settled", member)
            return False, None
    return True, result
