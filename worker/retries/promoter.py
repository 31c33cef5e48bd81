"""Precise retries, worker side: a promoter thread per worker process, and rq's scheduler told to keep off.

The promoter (a daemon thread of the worker process, never of a work horse) runs the promotion
script, which answers with each queue's next due time and the Redis clock; it then sleeps exactly
until the next retry it must see to, on its pub/sub connection, re-planning from announcements on
`keys.RETRY_SCHEDULED_CHANNEL` (a retry scheduled, retries promoted, a lease released) without
asking Redis. Every worker runs one, and the script's ZREM guard makes them safe together; to spend
one round trip per due time rather than one per worker, one promoter per queue is on duty (it holds
the queue's lease) and the others stand by, moving only retries the one on duty left `grace` late,
and taking the lease over when it is released or expires. After a reconnect a promoter
resubscribes, then promotes again (announcements may have been lost meanwhile); a poll every
`IDLE_CHECK_SECONDS` is the last safety net.

"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis import ConnectionPool
from rq.connections import parse_connection
from rq.utils import as_text

from worker import keys
from worker.retries.scheduler import Promotion, promote_due, release_leases

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub
    from rq.job import Job
    from rq.queue import Queue

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger: `rq worker` prints it

#: Longest a promoter sleeps without asking Redis: how soon one standing by notices a free lease,
#: and the safety net should a pub/sub message be lost.
IDLE_CHECK_SECONDS = 1.0
#: Lifetime of a promoter lease on a queue (renewed three times as often): how long retries may wait
#: when the promoter holding it dies without releasing it (a worker killed with SIGKILL).
LEASE_SECONDS = 3.0
#: How late a retry must be before a promoter not on duty for its queue moves it instead.
GRACE_SECONDS = 0.025
#: Longest pause after a Redis error before the promoter tries again.
MAX_ERROR_PAUSE_SECONDS = 5.0


class Promoter:
    """Moves the due retries of `queues` onto them on time, from a daemon thread with its own connections."""

    def __init__(
        self,
        connection: Redis[Any],
        queues: Sequence[Queue],
        *,
        job_class: type[Job],
        name: str,
        idle_check: float = IDLE_CHECK_SECONDS,
        lease: float = LEASE_SECONDS,
        grace: float = GRACE_SECONDS,
    ) -> None:
        # A pool of its own: the forking worker forks while this thread may hold a connection.
        connection_class, pool_class, pool_kwargs = parse_connection(connection)
        self.redis = connection_class(
            connection_pool=ConnectionPool(connection_class=pool_class, **pool_kwargs)
        )
        self.queues = list(queues)
        self.job_class = job_class
        self.name = name
        self.wake_channel = keys.promoter_wake(name)
        self.idle_check = idle_check
        self.lease = lease
        self.grace = grace
        self.last: Promotion | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"retry-promoter-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait for the thread (woken through its own channel, so this is quick)."""
        self._stopping.set()
        try:
            self.redis.publish(self.wake_channel, "stop")
        except redis.RedisError as exc:
            logger.warning("Promoter %s: could not wake it to stop (%s)", self.name, exc)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.redis.close()

    def _run(self) -> None:
        errors = 0
        while not self._stopping.is_set():
            # After any error, a fresh subscription, confirmed before the next promotion: an announcement
            # lost while Redis was away concerns a retry that promotion then finds.
            pubsub = self.redis.pubsub()
            try:
                self._subscribe(pubsub)
                while not self._stopping.is_set():
                    self._cycle(pubsub)
                    errors = 0
            except BaseException as exc:  # the thread must outlive anything (see `worker.threads`)
                if sys.is_finalizing():
                    raise
                errors += 1
                pause = min(MAX_ERROR_PAUSE_SECONDS, 0.05 * 2**errors)
                logger.warning(
                    "Promoter %s: %s: %s; again in %.2fs", self.name, type(exc).__name__, exc, pause
                )
                self._stopping.wait(pause)
            finally:
                pubsub.close()
        try:
            release_leases(self.redis, self.queues, owner=self.name)
        except redis.RedisError as exc:
            logger.warning(
                "Promoter %s: could not release its leases (%s); they expire by themselves", self.name, exc
            )

    def _subscribe(self, pubsub: PubSub) -> None:
        # Wait for both confirmations: a retry scheduled after them wakes us, one before is found by the
        # promotion that follows. No gap in between.
        pubsub.subscribe(keys.RETRY_SCHEDULED_CHANNEL, self.wake_channel)
        confirmed = 0
        deadline = time.monotonic() + 5.0
        while confirmed < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no subscription confirmation within 5s")
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1

    def _cycle(self, pubsub: PubSub) -> None:
        """Promote what is due, then sleep until the next retry this promoter must see to."""
        promotion = self.last = promote_due(
            self.redis,
            self.queues,
            job_class=self.job_class,
            owner=self.name,
            lease=self.lease,
            grace=self.grace,
        )
        replied_at = time.monotonic()
        if promotion.moved:
            logger.debug("Promoter %s: moved %d due retries onto their queues", self.name, promotion.moved)
        names = [queue.name for queue in self.queues]
        on_duty = {name for name, duty in zip(names, promotion.duty, strict=True) if duty}
        due = dict(zip(names, promotion.queue_due, strict=True))
        # On duty: renew the leases well before they expire. Standing by: look for a free lease.
        cap = min(self.idle_check, self.lease / 3) if on_duty else self.idle_check
        while not self._stopping.is_set():
            # Standing by, a queue's retry is ours only once it is `grace` late; due times are on the
            # Redis clock, which we read `replied_at` ago.
            times = [at if name in on_duty else at + self.grace for name, at in due.items() if at is not None]
            sleep = cap if not times else min(cap, min(times) - promotion.server_time)
            remaining = replied_at + sleep - time.monotonic()
            if remaining <= 0:
                return
            message = pubsub.get_message(timeout=remaining)
            if message is None or message["type"] == "unsubscribe":
                continue
            if message["type"] == "subscribe":
                return  # redis-py reconnected and resubscribed by itself: announcements may have been lost
            if as_text(message["channel"]) == self.wake_channel:
                return
            if self._heard(as_text(message["data"]), due, on_duty):
                return

    def _heard(self, text: str, due: dict[str, float | None], on_duty: set[str]) -> bool:
        """Re-plan from an announcement about one of our queues; True to ask Redis at once."""
        what, _, rest = text.partition(" ")
        if what == "promoted":  # "promoted <queue> <next due or nothing>"
            name, _, next_due = rest.partition(" ")
            if name in due:
                due[name] = float(next_due) if next_due else None
            return False
        if what == "release":  # "release <queue>": the one on duty stopped
            return rest in due and rest not in on_duty
        if rest in due:  # "<due> <queue>": a retry was scheduled
            current = due[rest]
            due[rest] = float(what) if current is None else min(current, float(what))
        return False
