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
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from redis.exceptions import ConnectionError as RedisConnectionError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.rate_limit import release_slot
from rq.utils import now
from rq.worker import Worker

from worker.retries.attempts import BUDGET_START_META_KEY, Attempt, append_attempt, attempt_count, iso, utcnow
from worker.rq_compat import private as rq_private
from worker.safety import leases

if TYPE_CHECKING:
    from redis.client import Pipeline, PubSub, PubSubWorkerThread
    from rq.executions import Execution
    from rq.queue import Queue
    from rq.worker import BaseWorker

logger = logging.getLogger(__name__)

#: Longest the worker's pub/sub thread reads before it looks whether it should stop, in seconds.
#: It bounds how long a worker takes to exit after its last job (no Redis command is sent per poll).
PUBSUB_POLL_SECONDS = 0.25


def stop_cold(worker: BaseWorker, signum: int) -> None:
    """A second shutdown signal: interrupt the current job and put it back at the front of its queue."""
    first = rq_private.shutdown_requested_at(worker)
    if first is not None and now() - first < timedelta(seconds=1):
        worker.log.debug(
            "Worker %s: shutdown signal ignored, received twice in less than 1 second", worker.name
        )
        return
    name = rq_private.signal_name(signum)
    worker.log.warning("Worker %s: cold shut down (%s); interrupting the current job", worker.name, name)
    running = list(worker.executions.values())
    reason = f"cold shutdown of worker {worker.name} ({name})"
    if isinstance(worker, Worker):  # the job runs in a horse: kill it, and once it is dead, put the job back
        if worker.horse_pid:
            worker.kill_horse()
            worker.wait_for_horse()
        for execution in running:
            requeue_interrupted(worker, execution, reason=reason)
        raise SystemExit()
    # The job runs in this process, below us on this very stack, and stands still while this handler
    # runs. Stop the worker first (its threads, its registration), then put the job back and end the
    # process at once, the way SIGKILL ends a horse: the job is back on its queue only for the moment
    # it takes this process to exit, never while the worker winds down (a rerun elsewhere could start).
    worker.teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    for execution in running:
        requeue_interrupted(worker, execution, reason=reason)
    logging.shutdown()
    os._exit(0)


def subscribe(worker: BaseWorker) -> None:
    """rq's `subscribe`, with the pub/sub thread reading in short polls instead of one 60 s blocking read.

    redis-py 8.2 made `PubSubWorkerThread.stop()` join the thread until it exits; a thread blocked
    in a long read then held every worker exit (burst end, warm shutdown) for up to a minute.
    With a poll the thread sees the stop within `PUBSUB_POLL_SECONDS` on every redis-py version.
    """
    worker.log.info("Worker %s: subscribing to channel %s", worker.name, worker.pubsub_channel_name)
    worker.pubsub = worker.connection.pubsub()
    worker.pubsub.subscribe(**{worker.pubsub_channel_name: worker.handle_payload})

    def failed(exc: BaseException, pubsub: PubSub, thread: PubSubWorkerThread) -> None:
        pubsub_failed(worker, exc)

    worker.pubsub_thread = worker.pubsub.run_in_thread(
        sleep_time=PUBSUB_POLL_SECONDS, daemon=True, exception_handler=failed
    )


def pubsub_failed(worker: BaseWorker, exc: BaseException) -> None:
    """The pub/sub thread outlives a lost connection (redis-py resubscribes once it is back) and
    anything else (a malformed command anyone can publish): only the interpreter's exit ends it."""
    if not isinstance(exc, RedisConnectionError):
        if sys.is_finalizing():
            raise exc
        worker.log.error(
            "Worker %s: pubsub command: failed; carrying on (%s: %s)",
            worker.name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        time.sleep(PUBSUB_POLL_SECONDS)  # an error that repeats does not spin
        return
    worker.log.error(
        "Worker %s: pubsub lost its Redis connection (%s); retrying in %.1fs",
        worker.name,
        exc,
        PUBSUB_POLL_SECONDS,
    )
    time.sleep(PUBSUB_POLL_SECONDS)


def unsubscribe(worker: BaseWorker) -> None:
    """Stop the pub/sub thread in a bounded time: at most one poll, whatever redis-py does in stop()."""
    if worker.pubsub_thread:
        worker.log.info("Worker %s: unsubscribing from channel %s", worker.name, worker.pubsub_channel_name)
        worker.pubsub_thread.stop()
        worker.pubsub_thread.join(timeout=PUBSUB_POLL_SECONDS * 2)
        worker.pubsub.close()
        worker.pubsub_thread = None


def requeue_interrupted(worker: BaseWorker, execution: Execution, *, reason: str) -> bool:
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
        rq_private.enqueue_at_front(queue, job, pipeline)
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


def queue_of(worker: BaseWorker, job: Job) -> Queue:
    for queue in worker.queues:
        if queue.name == job.origin:
            return queue
    return worker.queue_class(
        job.origin, connection=worker.connection, job_class=worker.job_class, serializer=worker.serializer
    )
