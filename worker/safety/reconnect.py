"""Reconnect support: a worker rides out a Redis outage instead of quitting mid-loop.

rq's dequeue loop survives `ConnectionError`, but every other Redis call in `work()` (heartbeats,
maintenance, the bookkeeping around a job) ends the worker with "unhandled exception". We give the
worker's connection a redis-py `Retry` that never gives up, with capped exponential backoff and
jitter: each command waits for Redis to come back and then goes on where it was, in the worker, its
threads and its forked work horse alike. Nothing half-done is dropped, so no accepted job is lost.
"""

from __future__ import annotations

import copy
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from worker.rq_compat import private as rq_private

if TYPE_CHECKING:
    from redis import Redis
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

logger = logging.getLogger(__name__)

T = TypeVar("T")
REDIS_DOWN = (ConnectionError, TimeoutError, socket.timeout)


def retry_forever(
    connection: Redis[Any], *, base: float = 0.05, cap: float = 2.0, log: logging.Logger = logger
) -> ReportingRetry:
    """Make every command on `connection` retry on connection errors, forever, `base`..`cap` seconds apart."""
    retry = ReportingRetry(EqualJitterBackoff(cap=cap, base=base), -1, supported_errors=REDIS_DOWN)
    retry.log = log
    # types-redis 4.6 predates Redis.set_retry (redis-py 5+).
    connection.set_retry(retry)  # type: ignore[attr-defined]
    return retry


def private_client(connection: Redis[Any]) -> Redis[Any]:
    """A client of its own (its own pool) to the server `connection` talks to, with the same options."""
    pool = connection.connection_pool
    own_pool = type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
    return type(connection)(connection_pool=own_pool)


class ReportingRetry(Retry):
    """redis-py's `Retry`, saying when a command starts waiting for Redis and when Redis is back.

    `last_trouble` is when (`time.monotonic()`) a command last failed or got through after failing.
    Per thread, it also knows when the latest attempt of a command was sent and how many attempts
    have failed, which `worker.safety.fencing` needs to count a lease from the write that got through.
    One object serves every connection of the client: redis-py deep-copies a connection's retry,
    and a copy would keep what it saw to itself.
    """

    log: logging.Logger = logger
    last_trouble: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._thread_state = threading.local()

    def __deepcopy__(self, memo: dict[int, Any]) -> ReportingRetry:
        return self

    def last_attempt_sent_at(self, default: float) -> float:
        """When (`time.monotonic()`) this thread last sent a command: after a command returns, the
        attempt that got through; `default` if this thread never sent one."""
        sent_at: float = getattr(self._thread_state, "sent_at", default)
        return sent_at

    def failures_here(self) -> int:
        """How many attempts of this thread's commands have failed so far."""
        failures: int = getattr(self._thread_state, "failures", 0)
        return failures

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *args: Any, **kwargs: Any) -> T:
        failures = 0
        state = self._thread_state

        def attempt() -> T:
            state.sent_at = time.monotonic()
            return do()

        def noting_fail(error: Exception, *rest: Any) -> Any:
            nonlocal failures
            failures += 1
            state.failures = getattr(state, "failures", 0) + 1
            self.last_trouble = time.monotonic()
            if failures == 1:
                self.log.warning(
                    "Redis unavailable (%s: %s); retrying with backoff", type(error).__name__, error
                )
            return fail(error, *rest)

        result = super().call_with_retry(attempt, noting_fail, *args, **kwargs)
        if failures:
            self.last_trouble = time.monotonic()
            self.log.info("Redis reachable again after %d failed attempt(s)", failures)
        return result


class Reconnect:
    """Keeps `worker`'s work loop alive across Redis outages: its own client that waits for Redis."""

    def __init__(self, worker: BaseWorker, *, backoff_cap: float) -> None:
        # The caller's client is left as it was (a `ping()` on it still raises while Redis is down):
        # the worker and its queues get a client of their own, to the same server, that waits.
        self.worker = worker
        self.backoff_cap = backoff_cap
        given = worker.connection
        worker.connection = private_client(given)
        worker.queues = [self._rebind(queue, given) for queue in worker.queues]
        rq_private.reorder(worker, worker.queues[:])
        self.retry = retry_forever(worker.connection, cap=backoff_cap, log=worker.log)

    def _rebind(self, queue: Queue, given: Redis[Any]) -> Queue:
        if queue.connection is not given:
            return queue
        rebound = copy.copy(queue)  # every option the caller gave the queue, on our client
        rebound.connection = self.worker.connection
        return rebound

    def seconds_since_trouble(self) -> float | None:
        """Seconds since this worker last could not reach Redis; None if it always could."""
        last = self.retry.last_trouble
        return None if last is None else time.monotonic() - last

    def run_maintenance(self, rq: Callable[[], None]) -> None:
        # Some maintenance runs WATCHed transactions, which redis-py does not retry.
        try:
            rq()
        except REDIS_DOWN as exc:
            self.worker.log.warning(
                "Worker %s: maintenance skipped, Redis unavailable (%s); next loop retries",
                self.worker.name,
                exc,
            )

    def save_success(self, job: Job, save: Callable[[], None]) -> None:
        """Run `save` (rq's success handling) until Redis takes it."""
        # Saving a result WATCHes the job's dependents; redis-py does not retry a WATCHed
        # transaction, and rq would then record the finished job as failed. Wait and save it again.
        delay = 0.1
        meta = copy.deepcopy(job.meta)
        while True:
            try:
                save()
                return
            except REDIS_DOWN as exc:
                job.meta = copy.deepcopy(meta)  # what the failed try recorded in memory is redone
                self.worker.log.warning(
                    "Job %s: Redis unavailable while saving its result (%s); retrying in %.1fs",
                    job.id,
                    exc,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_cap)
