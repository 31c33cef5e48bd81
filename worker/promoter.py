"""Precise retries, worker side: a promoter thread per worker process, and rq's scheduler told to keep off.

The promoter (a daemon thread of the worker process, never of a work horse) runs the promotion
script, which answers with the next due time and the Redis clock; it then sleeps exactly that long
on its pub/sub connection, so a message on `keys.RETRY_SCHEDULED_CHANNEL` announcing an earlier
retry wakes it at once. Every worker runs one; the script's ZREM guard makes them safe together.
After a reconnect it resubscribes, then promotes again (announcements may have been lost meanwhile);
a poll every `IDLE_CHECK_SECONDS` is the last safety net.

rq's own scheduler (`--with-scheduler`) polls whole seconds and pushes without a guard. A
`RetryWorker` therefore starts `RetryAwareScheduler` instead: it runs rq's jobs (`enqueue_at`,
rq's `Retry`) exactly as rq does and skips ours. A plain rq scheduler (`rqscheduler`, or a plain
`rq worker --with-scheduler` on the same queues) would not skip them: don't run one. Retries of
rate-limited jobs are not ours: rq's scheduler enqueues them through the rate limiter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis import ConnectionPool
from rq.connections import parse_connection
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import as_text, current_timestamp
from rq.worker import BaseWorker

from worker import keys
from worker.scheduler import Promotion, promote_due

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub
    from rq.job import Job
    from rq.queue import Queue

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger: `rq worker` prints it

#: Longest the promoter sleeps without asking Redis, in case a pub/sub message was lost.
IDLE_CHECK_SECONDS = 2.0
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
            except Exception as exc:  # the thread must outlive Redis hiccups; each is logged
                errors += 1
                pause = min(MAX_ERROR_PAUSE_SECONDS, 0.05 * 2**errors)
                logger.warning(
                    "Promoter %s: %s: %s; again in %.2fs", self.name, type(exc).__name__, exc, pause
                )
                self._stopping.wait(pause)
            finally:
                pubsub.close()

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
        """Promote what is due, then sleep until the next due time or an earlier retry is announced."""
        promotion = self.last = promote_due(self.redis, self.queues, job_class=self.job_class)
        if promotion.moved:
            logger.debug("Promoter %s: moved %d due retries onto their queues", self.name, promotion.moved)
        wait = promotion.wait
        deadline = time.monotonic() + (self.idle_check if wait is None else min(wait, self.idle_check))
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message["type"] == "subscribe":
                return  # redis-py reconnected and resubscribed by itself: announcements may have been lost
            if message["type"] != "message":
                continue
            if as_text(message["channel"]) == self.wake_channel:
                return
            due = float(message["data"])
            if promotion.next_due is None or due < promotion.next_due:
                return


class RetryAwareScheduledJobRegistry(ScheduledJobRegistry):
    """rq's scheduled registry, minus our retries, read in one MULTI so none slips between the two reads."""

    def get_jobs_to_schedule(self, timestamp: int | None = None, chunk_size: int = 1000) -> list[str]:
        score = timestamp if timestamp is not None else current_timestamp()
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(self.key, 0, score, start=0, num=chunk_size)
            pipe.zrangebyscore(keys.retries(self.name), 0, score)
            due, ours = pipe.execute()
        skip = set(ours)
        return [as_text(job_id) for job_id in due if job_id not in skip]


class RetryAwareScheduler(RQScheduler):
    """rq's scheduler for rq's scheduled jobs; our retries are left to the promoters."""

    def prepare_registries(self, queue_names: Any = None) -> None:
        names = queue_names or self._acquired_locks
        self._scheduled_job_registries = [
            RetryAwareScheduledJobRegistry(name, connection=self.connection, serializer=self.serializer)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
            for name in names
        ]


class PromotionMixin(BaseWorker):
    """Runs a `Promoter` while the worker works; `--with-scheduler` starts `RetryAwareScheduler`."""

    promoter: Promoter | None = None

    def bootstrap(
        self,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        super().bootstrap(logging_level, date_format, log_format)
        self.promoter = Promoter(self.connection, self.queues, job_class=self.job_class, name=self.name)
        self.promoter.start()

    def teardown(self) -> None:
        if not self.is_horse and self.promoter is not None:
            self.promoter.stop()
            self.promoter = None
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # rq's BaseWorker._start_scheduler with the scheduler class swapped (rq hard-codes RQScheduler).
        self.scheduler = RetryAwareScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
            finally:
                self.scheduler.release_locks()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
                self.scheduler.register_death()
        else:
            self.scheduler.start()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
