"""Leases: how a worker shows it is still running a job, and how another claims the job when not.

Each running execution holds a lease in `leases(queue)`, a sorted set beside rq's started registry
(same members, `<job_id>:<execution_id>`), scored by its expiry on the Redis clock. The worker
renews it every few seconds; a lease that expires means the worker died mid-job. rq's own score in
its started registry stays as rq sets it (a minute past the last heartbeat), so rq's cleanup and
django-rq's pages, which run that cleanup, only see a job after our recovery had ample time to claim it.

A claim is a token in `claim(member)`, set only by `recover_claim.lua`, and only once the lease
expired more than a fencing margin ago: a worker that could not renew its lease has stopped the
job by then (`worker.safety.fencing`, where the ordering is argued). The claimer handles the job in one
transaction that WATCHes that key and replaces the token by a tombstone; a claimer that dies first
lets the claim expire, and the job is claimed again. The old worker, should it come back, finds
the claim when renewing and stops the job, if its fence has not already.

`LeaseKeeper` is the thread that renews the lease of a job running in the worker process itself
(`SimpleRetryWorker`); the forking workers renew from their monitor loop instead.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from redis.connection import ConnectionPool
from redis.exceptions import WatchError
from rq.executions import Execution

from worker.keys import PREFIX
from worker.lua import script_text
from worker.rq_compat import layout as rq_layout
from worker.threads import surviving

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a handled claim's tombstone is kept, so a worker coming back late learns it lost the job.
TOMBSTONE_SECONDS = 3600
#: Seconds a worker's claim on its own job lasts (cold shutdown); it settles the job well within.
OWN_CLAIM_SECONDS = 30.0
#: Most expired leases one scan of a queue looks at; the next scan takes the rest.
SCAN_BATCH = 100

ClaimMode = Literal["expired", "own"]

LEASE_SCRIPT = "recover_lease.lua"
#: Per connection pool that has sent the lease script to Redis, its SHA (see `add_lease`).
_lease_script_sha: weakref.WeakKeyDictionary[ConnectionPool, str] = weakref.WeakKeyDictionary()


def leases(queue_name: str) -> str:
    """Sorted set: leases of the executions running from `queue_name`, scored by expiry (Redis clock)."""
    return f"{PREFIX}:leases:{queue_name}"


def claim(member: str) -> str:
    """String: the token of the worker recovering `member` (`<job_id>:<execution_id>`), then a tombstone."""
    return f"{PREFIX}:claim:{member}"


def add_lease(pipeline: Pipeline[Any], queue_name: str, member: str, ttl: float) -> None:
    """Queue on `pipeline` the start of `member`'s lease, `ttl` seconds long.

    The script goes by its SHA alone (EVALSHA), not as text. Only the first time per connection pool
    does redis-py's `Script` make sure Redis has it, when the pipeline runs (SCRIPT EXISTS, and SCRIPT
    LOAD if need be: a round trip more); doing that on every run would cost a round trip per job. A
    Redis that has lost its scripts since (a restart, a failover, SCRIPT FLUSH) answers NOSCRIPT to
    this one command and runs the rest of the transaction: the caller then calls `restore_lease`.
    """
    keys, args = [leases(queue_name), claim(member)], [member, repr(ttl), "add"]
    sha = _lease_script_sha.get(pipeline.connection_pool)
    if sha is not None:
        pipeline.evalsha(sha, len(keys), *keys, *args)
        return
    script = pipeline.register_script(script_text(LEASE_SCRIPT))
    script(keys=keys, args=args, client=pipeline)
    _lease_script_sha[pipeline.connection_pool] = script.sha  # type: ignore[attr-defined]  # types-redis 4.6 omits it


def restore_lease(connection: Redis[Any], queue_name: str, member: str, ttl: float) -> None:
    """Start `member`'s lease on its own, after `add_lease`'s pipeline failed with NOSCRIPT."""
    script = connection.register_script(script_text(LEASE_SCRIPT))  # sent again on NOSCRIPT
    script(keys=[leases(queue_name), claim(member)], args=[member, repr(ttl), "add"])


def renew_lease(connection: Redis[Any], queue_name: str, member: str, ttl: float) -> int:
    """Extend `member`'s lease by `ttl` seconds: 1 done, 0 no lease (job ended), -1 claimed by another."""
    script = connection.register_script(script_text(LEASE_SCRIPT))
    return int(script(keys=[leases(queue_name), claim(member)], args=[member, repr(ttl), "renew"]))


def drop_lease(pipeline: Pipeline[Any], queue_name: str, member: str) -> None:
    pipeline.zrem(leases(queue_name), member)


def expired_members(
    connection: Redis[Any], queue_name: str, limit: int = SCAN_BATCH, *, margin: float = 0.0
) -> list[str]:
    """Members of `queue_name` whose lease expired more than `margin` seconds ago by the Redis clock
    (oldest first)."""
    seconds, micros = connection.time()
    latest = seconds + micros / 1e6 - margin
    found = connection.zrangebyscore(leases(queue_name), "-inf", latest, start=0, num=limit)
    return [item.decode() if isinstance(item, bytes) else str(item) for item in found]


def try_claim(
    connection: Redis[Any],
    queue_name: str,
    started_key: str,
    member: str,
    token: str,
    ttl: float,
    mode: ClaimMode,
    *,
    margin: float = 0.0,
) -> bool:
    """Claim `member` with `token` for `ttl` seconds; see `scripts/recover_claim.lua` for the rules.

    In "expired" mode the lease must have expired more than `margin` seconds ago (the fencing margin).
    """
    script = connection.register_script(script_text("recover_claim.lua"))
    reply = script(
        keys=[leases(queue_name), started_key, claim(member)],
        args=[member, token, repr(ttl), mode, repr(margin)],
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
                rq_layout.remove_from_registry(pipeline, queue.started_job_registry.key, member)
            close_claim(pipeline, queue.name, member, token)
            pipeline.execute()
        except WatchError:
            logger.warning("Job %s: claim taken over by another worker before it was settled", member)
            return False, None
    return True, result


class LeaseKeeper:
    """One daemon thread per worker process that keeps the lease of the job it runs itself alive.

    `arm(job, execution)` as the job starts and `disarm()` as it ends cost the worker a lock each,
    not a thread: the thread wakes on its own clock, every `interval` seconds, and calls
    `renew(job, execution)` once the armed job has run for `interval` seconds, then every `interval`
    seconds; a shorter job is never renewed. A renewal runs under the lock that `disarm()` and
    `held()` take: once either has it, no renewal is under way and none starts, so a job that ends
    is never renewed after. The lock is re-entrant: a signal handler may take it on a thread that
    already holds it. The thread starts with the first job, never keeps the process alive, and stops
    at `close()`.
    """

    def __init__(self, renew: Callable[[Job, Execution], None], interval: float, *, name: str) -> None:
        self.interval = interval
        self._renew = renew
        self._name = name
        self._lock = threading.Condition(threading.RLock())
        self._armed: tuple[Job, Execution] | None = None
        self._due = 0.0  # time.monotonic() of the armed job's next renewal
        self._thread: threading.Thread | None = None
        self._generation = 0  # a thread runs while it is the current one

    def arm(self, job: Job, execution: Execution) -> None:
        """`job` now runs as `execution`; its first renewal is due in `interval` seconds."""
        with self._lock:
            self._armed = (job, execution)
            self._due = time.monotonic() + self.interval
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._generation,), name=self._name, daemon=True
                )
                self._thread.start()

    def disarm(self) -> None:
        """The armed job has ended (or is about to be settled): it is not renewed again."""
        with self._lock:
            self._armed = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """No renewal is under way or starts while inside."""
        with self._lock:
            yield

    def close(self) -> None:
        """Stop the thread, without waiting for it; `arm` would start another."""
        with self._lock:
            self._armed, self._thread = None, None
            self._generation += 1
            self._lock.notify_all()

    def _run(self, generation: int) -> None:
        with self._lock:
            while generation == self._generation:
                armed, wait = self._armed, self.interval
                if armed is not None:
                    wait = self._due - time.monotonic()
                    if wait <= 0:
                        self._renew_once(*armed)
                        self._due = time.monotonic() + self.interval
                        continue
                self._lock.wait(wait)

    def _renew_once(self, job: Job, execution: Execution) -> None:
        job_id = getattr(job, "id", job)  # nothing here may raise outside the guard
        with surviving(logger, f"Job {job_id}: lease renewal", f"next in {self.interval:g}s"):
            self._renew(job, execution)
