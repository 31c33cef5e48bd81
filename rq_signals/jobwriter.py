"""Writing jobs to Redis: the one path by which `rq_signals` puts jobs on rq's queues.

The commit flush and the sends outside a transaction (`rq_signals.enqueue.dispatch`), the
background writer (`rq_signals.flusher`) and the outbox (`rq_signals.outbox.enqueue_once`, which
the relay and ``OUTBOX="always"`` use) all write through here: `write_group` sends the jobs of one
Redis server in one request; `queue_writes` adds them to a transaction the caller runs (the
outbox's ``WATCH``/``MULTI``).

`write_jobs` packs new jobs for `worker.rq_compat.layout.write_new_jobs`, whose script
(`write_jobs.lua`, with the rest of the hand-written rq layout) writes them as rq 3.0's
``Queue.enqueue_many`` leaves them in Redis (the job hash, the queue list, the ``rq:queues`` set;
``Job.fetch`` reads each back as the job rq would have built), without building an rq ``Job`` per
job: one script per queue, five values per job. It serves plain queues only
(`writes_directly`); jobs of any other queue class go through rq's own ``enqueue_many``.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from django_rq.queues import DjangoRQ
from redis import Redis
from redis.client import Pipeline
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer as RqJSONSerializer
from rq.utils import get_call_string, now, parse_timeout

from rq_signals import lifecycle, queues
from rq_signals.exceptions import UnknownReceiver
from rq_signals.registration import lookup
from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private
from worker.serializers import JSONOrPickleSerializer, JSONSerializer

logger = logging.getLogger(__name__)


class NewJob(Protocol):
    """What the writer needs of a job: id, queue, function, call arguments, description, meta, timeout
    (seconds; None: the queue's default). `rq_signals.jobspec.JobSpec` and `rq_signals.outbox.OutboxJob`."""

    @property
    def job_id(self) -> str: ...

    @property
    def receiver_id(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def function(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def timeout(self) -> int | None: ...

    @property
    def args_json(self) -> str:
        """`job_args` as JSON text (written as they are under a JSON serializer)."""
        ...

    def job_args(self) -> tuple[Any, ...]: ...


J = TypeVar("J", bound=NewJob)

#: When the jobs' transaction committed (`time.time()` seconds), one moment or one per job id; None:
#: when the write began (a send outside a transaction). The start of ``receiver_enqueued``'s latency.
CommittedAt = float | Mapping[str, float] | None


def by_connection(jobs: Iterable[J]) -> list[list[J]]:
    """`jobs` in groups whose queues share a Redis connection (one request each), in order."""
    groups: dict[str, list[J]] = {}
    for job in jobs:
        groups.setdefault(queues.connection_key(job.queue), []).append(job)
    return list(groups.values())


def write_group(jobs: Sequence[NewJob], *, committed_at: CommittedAt = None) -> list[str]:
    """Write jobs whose queues share a Redis connection (`by_connection`) in one request, atomically; ids.

    Plain queues get their jobs written by one script each (`write_jobs`); any other queue class
    goes through rq. One plain queue (the usual case) is one command; more are one MULTI/EXEC.
    Then ``receiver_enqueued`` is sent for each job (`announce_enqueued`).
    """
    if committed_at is None:
        committed_at = time.time()
    groups = _by_queue(jobs)
    first = queues.get_queue(jobs[0].queue)
    enqueued_at = now()
    if len(groups) == 1 and writes_directly(first):
        write_jobs(first.connection, first, jobs[0].function, jobs, now=enqueued_at)
    else:
        with first.connection.pipeline() as pipe:
            _queue_groups(pipe, groups, enqueued_at)
            pipe.execute()
    if logger.isEnabledFor(logging.DEBUG):
        for job in jobs:
            logger.debug("Job %s: enqueued on %r: %s", job.job_id, job.queue, job.description)
    announce_enqueued(jobs, committed_at)
    return [job.job_id for job in jobs]


def announce_enqueued(jobs: Iterable[NewJob], committed_at: CommittedAt) -> None:
    """Send ``receiver_enqueued`` for `jobs`, which Redis has just taken (nothing sent if nobody listens).

    ``latency`` is seconds from `committed_at` to now (0 at least: clocks of two hosts may disagree).
    """
    if not lifecycle.receiver_enqueued.receivers:
        return
    written_at = time.time()
    for job in jobs:
        args = job.job_args()
        start = committed_at.get(job.job_id) if isinstance(committed_at, Mapping) else committed_at
        latency = max(0.0, written_at - start) if start is not None else None
        try:
            func: object = lookup(job.receiver_id).func
        except UnknownReceiver:  # the relay sending a job of a receiver this process does not register
            func = None
        lifecycle.send(
            lifecycle.receiver_enqueued,
            func,
            job.receiver_id,
            None,
            job_id=job.job_id,
            attempt=1,
            payload=args[2] if len(args) > 2 else None,
            queue=job.queue,
            latency=latency,
        )


def queue_writes(pipe: Pipeline[Any], jobs: Sequence[NewJob]) -> None:
    """Queue on `pipe` (a transaction the caller executes) the writes `write_group` would send for `jobs`."""
    _queue_groups(pipe, _by_queue(jobs), now())


def writes_directly(queue: Queue) -> bool:
    """Whether `write_jobs` may stand in for ``queue.enqueue_many``: a plain, asynchronous rq queue."""
    return type(queue) in _PLAIN_QUEUE_CLASSES and queue.job_class is Job and rq_private.queue_is_async(queue)


#: Queue classes whose enqueue path is rq's own ``Queue.enqueue_many`` (DjangoRQ overrides only
#: ``enqueue_call``): `write_jobs` reproduces what it writes. Any other class goes through rq.
_PLAIN_QUEUE_CLASSES: tuple[type[Queue], ...] = (Queue, DjangoRQ)


def _by_queue(jobs: Iterable[J]) -> dict[tuple[str, str], list[J]]:
    """`jobs` by queue name and function (one `write_jobs` each), in order."""
    groups: dict[tuple[str, str], list[J]] = {}
    for job in jobs:
        groups.setdefault((job.queue, job.function), []).append(job)
    return groups


def _queue_groups(pipe: Pipeline[Any], groups: dict[tuple[str, str], list[J]], enqueued_at: datetime) -> None:
    for (name, function), group in groups.items():
        queue = queues.get_queue(name)
        if writes_directly(queue):
            write_jobs(pipe, queue, function, group, now=enqueued_at)
        else:
            queue.enqueue_many([_job_data(job) for job in group], pipeline=pipe)


def _job_data(job: NewJob) -> Any:
    """`job` for rq's ``enqueue_many`` (queue classes `write_jobs` does not serve)."""
    return Queue.prepare_data(
        job.function,
        args=job.job_args(),
        timeout=job.timeout,
        description=job.description,
        meta=job.meta,
        job_id=job.job_id,
    )


# rq's Redis layout, written by hand: the job hash fields `write_jobs` packs for `rq_layout.write_new_jobs`.


def write_jobs(
    client: Redis[bytes] | Pipeline[Any],
    queue: Queue,
    function: str,
    jobs: Sequence[NewJob],
    *,
    now: datetime,
) -> None:
    """Write on `client` (now) or queue on a pipeline what ``queue.enqueue_many`` writes for `jobs`.

    One ``EVAL`` of `write_jobs.lua` (`worker.rq_compat.layout.write_new_jobs`; no dependencies, TTLs,
    callbacks): the queue's key added to
    ``rq:queues``, the ids pushed on the queue, per job a hash ``Job.fetch`` reads back as the job
    rq would have saved. `now` (UTC) is each job's ``created_at`` and ``enqueued_at`` (rq takes them
    microseconds apart). The script is atomic, so nobody sees an id before its hash; under
    ``maxmemory`` Redis refuses it before its first write or lets it finish. Per job the client
    sends five values, and under a JSON serializer the ``data`` embeds `NewJob.args_json` as it is.
    """
    if not jobs:
        return
    dumps = queue.serializer.dumps
    writes_json = queue.serializer in _JSON_SERIALIZERS
    call_head = f"[{json.dumps(function)}, null, ".encode() if writes_json else b""
    default_timeout = rq_private.queue_default_timeout(queue)
    timeouts: dict[int | None, str] = {}
    metas: dict[int, bytes] = {}  # one serialization per meta object: a receiver's jobs share theirs
    job_ids: list[str] = []
    values: list[str | bytes] = []
    for job in jobs:
        if writes_json:
            data = call_head + job.args_json.encode() + b", {}]"
        else:
            data = dumps((function, None, job.job_args(), {}))
        timeout = timeouts.get(job.timeout)
        if timeout is None:
            timeout = timeouts[job.timeout] = str(_timeout(job.timeout, default_timeout))
        meta = job.meta
        packed = b""
        if meta:
            packed = metas.get(id(meta), b"")
            if not packed:
                packed = metas[id(meta)] = dumps(meta)
        description = job.description or get_call_string(function, job.job_args(), {}, max_length=75) or ""
        job_ids.append(job.job_id)
        values += (zlib.compress(data), description, timeout, packed)
    rq_layout.write_new_jobs(client, queue, job_ids, values, created_at=now)


#: Serializers whose ``dumps`` is ``json.dumps(value).encode()`` for JSON values: `write_jobs` writes
#: the job's call as JSON text it assembles around the already encoded payload.
_JSON_SERIALIZERS: Final[tuple[object, ...]] = (JSONSerializer, JSONOrPickleSerializer, RqJSONSerializer)


def _timeout(seconds: int | None, default: int) -> int:
    """The job's timeout as ``Queue.create_job`` settles it: its own, else the queue's default."""
    timeout = parse_timeout(seconds)
    if timeout is None:
        return default
    if timeout == 0:
        raise ValueError("0 timeout is not allowed. Use -1 for infinite timeout")
    return timeout
