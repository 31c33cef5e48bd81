"""The transactional outbox: jobs that could not reach Redis wait in the database until a relay sends them.

``RQ_SIGNALS["OUTBOX"]`` says when a job goes through here:

- ``"on_failure"`` (default): a transaction's jobs are enqueued after commit; if Redis does not answer
  (any ``RedisError`` or socket error), they are stored here instead, after the commit, and the
  request goes on with a warning naming the receivers and job ids.
- ``"always"``: every after-commit job is written here inside the sending transaction (it commits or
  rolls back with the rows that caused it); after commit it is enqueued through the relay's guarded
  path and its row deleted, so a process killed between commit and enqueue loses nothing either.
- ``"off"``: no outbox; a Redis error after commit is logged and raised, the job is lost.

Costs and limits: ``"always"`` adds one INSERT per job inside the transaction, and after commit three
Redis round trips (WATCH, the EXISTS script, MULTI/EXEC) and one DELETE instead of one pipeline. With
``"on_failure"`` a process killed between commit and enqueue loses that transaction's jobs. A send
with ``on_commit=False`` that Redis refuses inside a transaction is kept with that transaction. A
marker lives `defaults.OUTBOX_MARKER_TTL_SECONDS` (7 days): a row relayed but not deleted for longer
than that (and whose job hash is gone) would be enqueued again.

The relay (`rq_signals.relay`: every worker runs it, and ``manage.py rqsignals relay``) sends the
rows through `enqueue_once`, which enqueues a job only under ``WATCH``, if neither the job's hash
nor its ``rq_signals:relayed:<job_id>`` marker exists, setting the marker (with a TTL) in the same
``MULTI``: a job id is enqueued once, whichever relays (or flushes) race for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from redis.exceptions import RedisError, WatchError
from rq.job import Job

from rq_signals import defaults, jobwriter, queues
from rq_signals.jobspec import JobSpec, list_ids, list_receivers
from rq_signals.models import OutboxEntry

logger = logging.getLogger(__name__)

#: What "Redis did not take the job" looks like: the server is down, slow, read-only, out of memory.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)

#: Redis key prefix of the markers of relayed jobs (``rq_signals:relayed:<job_id>``).
MARKER_PREFIX = "rq_signals:relayed:"

# KEYS: for each job, its marker then its rq hash (rq:job:<id>). Returns 1/0 per key: EXISTS.
_EXISTS_SCRIPT = (
    "local found = {} for i, key in ipairs(KEYS) do found[i] = redis.call('EXISTS', key) end return found"
)


@dataclass(frozen=True)
class OutboxJob:
    """Everything that makes an RQ job, as JSON: the relay rebuilds exactly the job the flush would send."""

    job_id: str
    queue: str
    function: str
    args: tuple[Any, ...]
    description: str
    meta: dict[str, Any]
    timeout: int | None  # seconds; None: the queue's default

    @classmethod
    def from_spec(cls, spec: JobSpec) -> OutboxJob:
        return cls(
            spec.job_id,
            spec.queue,
            spec.function,
            spec.job_args(),
            spec.description,
            spec.meta,
            spec.timeout,
        )

    @classmethod
    def from_json(cls, text: str) -> OutboxJob:
        data = json.loads(text)
        return cls(
            data["job_id"],
            data["queue"],
            data["function"],
            tuple(data["args"]),
            data["description"],
            data["meta"],
            data["timeout"],
        )

    def to_json(self) -> str:
        fields = {
            "job_id": self.job_id,
            "queue": self.queue,
            "function": self.function,
            "args": list(self.args),
            "description": self.description,
            "meta": self.meta,
            "timeout": self.timeout,
        }
        return json.dumps(fields, allow_nan=False, ensure_ascii=False)

    @property
    def receiver(self) -> str:
        return str(self.args[0]) if self.args else self.function

    @property
    def receiver_id(self) -> str:
        """The receiver's dotted path (`rq_signals.jobwriter.NewJob`)."""
        return self.receiver

    def job_args(self) -> tuple[Any, ...]:
        return self.args

    @property
    def args_json(self) -> str:
        """`args` as JSON text, as a JSON serializer writes them (`rq_signals.jobwriter.NewJob`)."""
        return json.dumps(list(self.args))


def store(specs: Sequence[JobSpec], *, using: str) -> list[str]:
    """Write `specs` to the outbox of database `using` (in its current transaction, if any); their ids.

    ``bulk_create`` sends no model signal, and a job id already stored is left as it is.
    """
    now = timezone.now()
    rows = [
        OutboxEntry(
            job_id=job.job_id, queue=job.queue, receiver=job.receiver, data=job.to_json(), created_at=now
        )
        for job in map(OutboxJob.from_spec, specs)
    ]
    OutboxEntry.objects.using(using).bulk_create(
        rows, batch_size=defaults.OUTBOX_BATCH_SIZE, ignore_conflicts=True
    )
    return [row.job_id for row in rows]


def store_unsent(specs: Sequence[JobSpec], *, using: str, error: BaseException) -> None:
    """Keep jobs Redis refused (after commit) for the relay, with a warning naming receivers and ids."""
    job_ids = store(specs, using=using)
    logger.warning(
        "Receivers %s: Redis did not take %d job(s) after commit (%s); kept in the outbox of "
        "database %r until the relay enqueues them: %s",
        list_receivers(specs),
        len(job_ids),
        describe_error(error),
        using,
        list_ids(job_ids),
    )


def deliver(specs: Sequence[JobSpec], *, using: str, committed_at: float | None = None) -> list[str]:
    """Enqueue jobs stored by ``OUTBOX="always"`` (once each), then delete their rows; ids enqueued.

    If Redis does not answer, the rows stay for the relay and a warning names receivers and ids.
    `committed_at` (`time.time()` seconds): when their transaction committed.
    """
    sent = enqueue_once([OutboxJob.from_spec(spec) for spec in specs], committed_at=committed_at)
    if sent.failed:
        logger.warning(
            "Receivers %s: Redis did not take %d job(s) after commit (%s); they wait in the "
            "outbox of database %r for the relay: %s",
            list_receivers(spec for spec in specs if spec.job_id in sent.failed),
            len(sent.failed),
            "; ".join(sorted(set(sent.failed.values()))),
            using,
            list_ids(list(sent.failed)),
        )
    discard(sent.done, using=using)
    return sent.enqueued


def discard(job_ids: Sequence[str], *, using: str) -> int:
    """Delete the rows of `job_ids` (no model signals: a raw DELETE, in chunks); rows deleted."""
    deleted = 0
    for start in range(0, len(job_ids), defaults.OUTBOX_BATCH_SIZE):
        chunk = job_ids[start : start + defaults.OUTBOX_BATCH_SIZE]
        rows = OutboxEntry.objects.using(using).filter(job_id__in=chunk)
        # _raw_delete: QuerySet.delete() would send pre/post_delete to receivers without a sender.
        deleted += rows._raw_delete(using)
    return deleted


@dataclass
class Sent:
    """What `enqueue_once` did with each job id: enqueued, found already there, or not sent (and why)."""

    enqueued: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job id -> the Redis error, described

    @property
    def done(self) -> list[str]:
        """The ids Redis has now: their outbox rows can go."""
        return self.enqueued + self.already_there


def enqueue_once(jobs: Sequence[OutboxJob], *, committed_at: jobwriter.CommittedAt = None) -> Sent:
    """Enqueue each job unless Redis has it or has relayed it.

    One ``WATCH``/``MULTI`` per Redis server; the jobs of a server that does not answer (any
    `REDIS_ERRORS` error) are reported in `Sent.failed` and the other servers still get theirs.
    ``receiver_enqueued`` is sent for the jobs enqueued here, its latency from `committed_at`.
    """
    sent = Sent()
    for group in jobwriter.by_connection(jobs):
        started = time.time()
        try:
            fresh, present = _enqueue_group_once(group)
        except REDIS_ERRORS as exc:
            sent.failed.update(dict.fromkeys((job.job_id for job in group), describe_error(exc)))
            continue
        enqueued = set(fresh)
        since = started if committed_at is None else committed_at
        jobwriter.announce_enqueued([job for job in group if job.job_id in enqueued], since)
        sent.enqueued += fresh
        sent.already_there += present
    return sent


def marker_key(job_id: str) -> str:
    return f"{MARKER_PREFIX}{job_id}"


def _enqueue_group_once(jobs: list[OutboxJob]) -> tuple[list[str], list[str]]:
    """Jobs whose queues share a Redis connection: WATCH their keys, check, enqueue the new ones.

    The new ones are written by `rq_signals.jobwriter.queue_writes` inside the ``MULTI``, with their markers.
    """
    keys = [key for job in jobs for key in (marker_key(job.job_id), Job.key_for(job.job_id))]
    connection = queues.get_queue(jobs[0].queue).connection
    with connection.pipeline() as pipe:
        for _ in range(defaults.OUTBOX_WATCH_ATTEMPTS):
            try:
                pipe.watch(*keys)
                found = pipe.eval(_EXISTS_SCRIPT, len(keys), *keys)
                present = {job.job_id for i, job in enumerate(jobs) if found[2 * i] or found[2 * i + 1]}
                pipe.multi()
                fresh = [job for job in jobs if job.job_id not in present]
                for job in fresh:
                    pipe.set(marker_key(job.job_id), 1, ex=defaults.OUTBOX_MARKER_TTL_SECONDS)
                if fresh:
                    jobwriter.queue_writes(pipe, fresh)
                pipe.execute()
            except WatchError:
                continue  # another relay (or flush) touched one of these jobs: look again
            return (
                [job.job_id for job in jobs if job.job_id not in present],
                [job.job_id for job in jobs if job.job_id in present],
            )
    raise WatchError(
        f"Outbox: jobs {list_ids([job.job_id for job in jobs])} kept changing under "
        f"{defaults.OUTBOX_WATCH_ATTEMPTS} WATCH attempts; left for the next pass"
    )


def describe_error(exc: BaseException) -> str:
    """``ConnectionError: Error 111 connecting to ...``: the error's type and message, for logs and rows."""
    return f"{type(exc).__name__}: {exc}"
