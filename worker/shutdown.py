"""Warm and cold shutdown that lose no job.

Warm (SIGTERM or SIGINT once) is rq's own: the worker takes no new job and exits once the current
one has finished and its outcome is saved.

Cold (a second signal, at least a second after the first; rq ignores a quicker repeat) stops the
current job at once: the work horse is SIGKILLed (`RetryWorker`), or the worker process exits
without unwinding the job (`SimpleRetryWorker`, whose job runs in the worker itself). rq would
leave that job in its started registry, to be failed as abandoned much later; we put it back at the
front of its queue, with an "interrupted" attempt in its history. An interruption is the operator's
doing, not the job's: it does not use up the job's retry budget (a job interrupted by every deploy
still gets all its retries), whether or not the job has a retry policy.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from redis.exceptions import ConnectionError as RedisConnectionError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.rate_limit import release_slot
from rq.utils import now
from rq.worker import Worker
from rq.worker.base import signal_name as _rq_signal_name

from worker import leases
from worker.attempts import BUDGET_START_META_KEY, Attempt, append_attempt, attempt_count, iso, utcnow

if TYPE_CHECKING:
    from redis.client import Pipeline, PubSub, PubSubWorkerThread
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.worker import BaseWorker as _WorkerBase
else:
    _WorkerBase = object

logger = logging.getLogger(__name__)

#: Longest the worker's pub/sub thread reads before it looks whether it should stop, in seconds.
#: It bounds how long a worker takes to exit after its last job (no Redis command is sent per poll).
PUBSUB_POLL_SECONDS = 0.25


def signal_name(signum: int) -> str:
    return str(_rq_signal_name(signum))  # type: ignore[no-untyped-call]  # rq leaves it unannotated


class ShutdownMixin(_WorkerBase):
    """A cold shutdown puts the interrupted job back at the front of its queue."""

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        first = self._shutdown_requested_date
        if first is not None and now() - first < timedelta(seconds=1):
            self.log.debug(
                "Worker %s: shutdown signal ignored, received twice in less than 1 second", self.name
            )
            return
        self.log.warning(
            "Worker %s: cold shut down (%s); interrupting the current job", self.name, signal_name(signum)
        )
        running = list(self.executions.values())
        if self.horse_pid:
            self.kill_horse()
            self.wait_for_horse()
        for execution in running:
            requeue_interrupted(
                self, execution, reason=f"cold shutdown of worker {self.name} ({signal_name(signum)})"
            )
        if isinstance(self, Worker):
            raise SystemExit()
        # The job runs in this process, below us on this very stack: stop it the way SIGKILL stops a horse.
        self.teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        logging.shutdown()
        os._exit(0)

    def subscribe(self) -> None:
        """rq's, with the pub/sub thread reading in short polls instead of one 60 s blocking read.

        redis-py 8.2 made `PubSubWorkerThread.stop()` join the thread until it exits; a thread blocked
        in a long read then held every worker exit (burst end, warm shutdown) for up to a minute.
        With a poll the thread sees the stop within `PUBSUB_POLL_SECONDS` on every redis-py version.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_SECONDS, daemon=True, exception_handler=self.pubsub_failed
        )

    def pubsub_failed(self, exc: BaseException, pubsub: PubSub, thread: PubSubWorkerThread) -> None:
        """The pub/sub thread outlives a lost connection (redis-py resubscribes once it is back) and
        anything else (a malformed command anyone can publish): only the interpreter's exit ends it."""
        if not isinstance(exc, RedisConnectionError):
            if sys.is_finalizing():
                raise exc
            self.log.error(
                "Worker %s: pubsub command: failed; carrying on (%s: %s)",
                self.name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            time.sleep(PUBSUB_POLL_SECONDS)  # an error that repeats does not spin
            return
        self.log.error(
            "Worker %s: pubsub lost its Redis connection (%s); retrying in %.1fs",
            self.name,
            exc,
            PUBSUB_POLL_SECONDS,
        )
        time.sleep(PUBSUB_POLL_SECONDS)

    def unsubscribe(self) -> None:
        """Stop the pub/sub thread in a bounded time: at most one poll, whatever redis-py does in stop()."""
        if self.pubsub_thread:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=PUBSUB_POLL_SECONDS * 2)
            self.pubsub.close()
            self.pubsub_thread = None


def requeue_interrupted(worker: _WorkerBase, execution: Execution, *, reason: str) -> bool:
    """Put the job of `execution` back at the front of its queue, if it has not ended meanwhile."""
    connection = worker.connection
    try:
        job = worker.job_class.fetch(execution.job_id, connection=connection, serializer=worker.serializer)
    except NoSuchJobError:
        return False
    queue = queue_of(worker, job)
    member, token = execution.composite_key, uuid4().hex
    if not leases.try_claim(
        connection, queue.name, queue.started_job_registry.key, member, token, leases.OWN_CLAIM_SECONDS, "own"
    ):
        worker.log.info("Job %s: already ended or being recovered; nothing to put back", job.id)
        return False
    if job.get_status(refresh=False) != JobStatus.STARTED:
        leases.settle_claim(connection, queue, member, token, job=job, execution=execution, handle=None)
        return False
    started_at = execution.created_at

    def put_back(pipeline: Pipeline[Any]) -> Attempt:
        attempt = record_interruption(job, worker_name=worker.name, started_at=started_at, reason=reason)
        queue._enqueue_job(job, pipeline=pipeline, at_front=True)
        return attempt

    settled, attempt = leases.settle_claim(
        connection, queue, member, token, job=job, execution=execution, handle=put_back
    )
    if not settled or attempt is None:
        return False
    release_slot(job)
    worker.log.warning(
        "Job %s: interrupted (%s); back at the front of queue %s, attempt %d recorded, retry "
        "budget untouched",
        job.id,
        reason,
        queue.name,
        attempt.attempt,
    )
    return True


def record_interruption(job: Job, *, worker_name: str, started_at: datetime | None, reason: str) -> Attempt:
    """Append an "interrupted" attempt to the job's meta (in memory), not counted against its budget."""
    attempt = Attempt(
        attempt=attempt_count(job.meta) + 1,
        started_at=iso(started_at),
        ended_at=iso(utcnow()) or "",
        worker=worker_name,
        outcome="interrupted",
        message=reason,
    )
    append_attempt(job.meta, attempt)
    job.meta[BUDGET_START_META_KEY] = int(job.meta.get(BUDGET_START_META_KEY, 0)) + 1
    return attempt


def queue_of(worker: _WorkerBase, job: Job) -> Queue:
    for queue in worker.queues:
        if queue.name == job.origin:
            return queue
    return worker.queue_class(
        job.origin, connection=worker.connection, job_class=worker.job_class, serializer=worker.serializer
    )
