"""Queue name to RQ queue, through django-rq's ``RQ_QUEUES``; the one place that knows connections.

``django_rq.get_queue()`` opens a new Redis connection (pool) per call, which costs a connect per
save; here each queue is built once and queues with the same connection settings share one Redis
client, so a transaction's jobs can go out in one pipeline per Redis server. Everything is rebuilt
when ``RQ_QUEUES`` or ``RQ`` change (``override_settings``).

Jobs are written and read with the serializer of the workers' gate (`job_gate`): JSON, or JSON and
pickle under ``RQ_SIGNALS["ACCEPT_PICKLE"]``; never rq's default pickle for what we write.

`write_jobs` writes new jobs into a pipeline exactly as rq 3.0's ``Queue.enqueue_many`` leaves them
in Redis (the job hash, the queue list, the ``rq:queues`` set), without building an rq ``Job`` per
job: what rq computes per job (timestamps, serializer, origin, the constant fields) is computed
once per call. It serves plain queues only (`writes_directly`); other queues go through rq.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import django_rq
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_rq.connection_utils import filter_connection_params, get_redis_connection
from django_rq.queues import DjangoRQ
from redis import Redis
from redis.client import Pipeline
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import Serializer
from rq.utils import get_call_string, parse_timeout, utcformat

from rq_signals import defaults
from rq_signals.conf import conf
from worker.gate import JobGate
from worker.serializers import JSONOrPickleSerializer, JSONSerializer

_lock = threading.Lock()
_queues: dict[str, Queue] = {}
_connections: dict[str, Redis[bytes]] = {}
_server_versions: dict[str, tuple[int, int, int]] = {}
_connection_keys: dict[str, str] = {}
_serializers: list[Serializer] = []  # the serializer the cached queues were built with (none built: empty)

#: Queue classes whose enqueue path is rq's own ``Queue.enqueue_many`` (DjangoRQ overrides only
#: ``enqueue_call``): `write_jobs` reproduces what it writes. Any other class goes through rq.
_PLAIN_QUEUE_CLASSES: tuple[type[Queue], ...] = (Queue, DjangoRQ)


def get_queue(name: str) -> Queue:
    """The RQ queue ``RQ_QUEUES[name]`` describes, built once per process; KeyError if it is not there."""
    queue = _queues.get(name)
    if queue is not None:
        return queue
    with _lock:
        if name not in _queues:
            config = conf.queues[name]
            key = connection_key(name)
            connection = _connections.get(key)
            if connection is None:
                connection = _connections[key] = get_redis_connection(config)
            serializer = job_serializer()
            _serializers[:] = [serializer]
            # commit_mode="auto": we decide when to enqueue (after commit), not django-rq.
            queue = django_rq.get_queue(
                name, connection=connection, commit_mode="auto", serializer=serializer
            )
            if key not in _server_versions:  # one INFO per connection per process, not per flush
                _server_versions[key] = queue.get_redis_server_version()
            queue.redis_server_version = _server_versions[key]
            _queues[name] = queue
        return _queues[name]


def job_gate() -> JobGate:
    """What the workers of this process run: `rq_signals.jobs.run_receiver` and
    ``RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]``, pickled jobs only under ``RQ_SIGNALS["ACCEPT_PICKLE"]``,
    webhooks only to ``RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]``.

    Installed for every worker by ``AppConfig.ready()`` (`worker.gate.install_job_gate`).
    """
    return JobGate(
        (defaults.JOB_FUNCTION, *conf.allowed_job_functions),
        accept_pickle=conf.accept_pickle is True,
        functions_setting='RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]',
        pickle_setting='RQ_SIGNALS["ACCEPT_PICKLE"] = True',
        allowed_webhook_urls=conf.allowed_webhook_urls,
        webhooks_setting='RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]',
    )


def job_serializer() -> Serializer:
    """The serializer of `job_gate` (without validating ``ALLOWED_JOB_FUNCTIONS``): our queues'."""
    return JSONOrPickleSerializer if conf.accept_pickle is True else JSONSerializer


def connection_key(name: str) -> str:
    """Equal for queues that share a Redis connection (the same connection settings in RQ_QUEUES)."""
    key = _connection_keys.get(name)
    if key is None:
        params: dict[str, Any] = filter_connection_params(conf.queues[name])
        key = _connection_keys[name] = repr(sorted(params.items()))
    return key


def reset() -> None:
    """Forget every queue and close their connections; the next `get_queue` rebuilds from settings."""
    with _lock:
        connections = list(_connections.values())
        _queues.clear()
        _connections.clear()
        _server_versions.clear()
        _connection_keys.clear()
        _serializers.clear()
    for connection in connections:
        connection.close()


class NewJob(Protocol):
    """What `write_jobs` needs of a job: its id, call arguments, description, meta, timeout (seconds)."""

    @property
    def job_id(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def timeout(self) -> int | None: ...

    def job_args(self) -> tuple[Any, ...]: ...


def writes_directly(queue: Queue) -> bool:
    """Whether `write_jobs` may stand in for ``queue.enqueue_many``: a plain, asynchronous rq queue."""
    return type(queue) in _PLAIN_QUEUE_CLASSES and queue.job_class is Job and bool(queue._is_async)


def write_jobs(
    pipe: Pipeline[Any], queue: Queue, function: str, jobs: Sequence[NewJob], *, now: datetime
) -> None:
    """Queue on `pipe` what ``queue.enqueue_many`` writes for `jobs` (no dependencies, TTLs, callbacks).

    One ``SADD`` of the queue's key to ``rq:queues``, per job one ``HSET`` of the fields
    ``Job.to_dict()`` gives, in its order (``status`` first, where rq's separate ``HSET status``
    puts it), then one ``RPUSH`` of all ids: in a MULTI/EXEC, what rq's three commands per job
    leave. `now` (UTC) is each job's ``created_at`` and ``enqueued_at`` (rq takes them microseconds
    apart). Everything but the data, description, timeout and meta is encoded once per call, with
    the connection's own encoder.
    """
    if not jobs:
        return
    encode = pipe.get_encoder().encode  # type: ignore[no-untyped-call]  # untyped in redis-stubs
    dumps = queue.serializer.dumps
    stamp = encode(utcformat(now))
    blank = encode("")
    head = [encode("status"), encode(JobStatus.QUEUED.value), encode("created_at"), stamp, encode("data")]
    middle = [field for name in _BLANK_FIELDS for field in (encode(name), blank)]
    middle += [encode("origin"), encode(queue.name), encode("description")]
    enqueued_at, timeout_field, meta_field = encode("enqueued_at"), encode("timeout"), encode("meta")
    timeouts: dict[int | None, bytes] = {}
    metas: dict[int, bytes] = {}  # one serialization per meta object: a receiver's jobs share theirs
    pipe.sadd(queue.redis_queues_keys, queue.key)
    for job in jobs:
        args = job.job_args()
        description = job.description or get_call_string(function, args, {}, max_length=75) or ""
        timeout = timeouts.get(job.timeout)
        if timeout is None:
            timeout = timeouts[job.timeout] = encode(_timeout(job.timeout, queue._default_timeout))
        fields = [
            *head,
            zlib.compress(dumps((function, None, args, {}))),
            *middle,
            encode(description),
            enqueued_at,
            stamp,
            timeout_field,
            timeout,
        ]
        meta = job.meta
        if meta:
            packed = metas.get(id(meta))
            if packed is None:
                packed = metas[id(meta)] = dumps(meta)
            fields += (meta_field, packed)
        # HSET with a flat field/value list (redis-stubs type hset() for a mapping only)
        pipe.execute_command("HSET", Job.key_for(job.job_id), *fields)  # type: ignore[no-untyped-call]
    pipe.rpush(queue.key, *[job.job_id for job in jobs])


#: The fields ``Job.to_dict()`` writes empty for a job that has not run, between ``data`` and ``origin``.
_BLANK_FIELDS = (
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
)


def _timeout(seconds: int | None, default: int) -> int:
    """The job's timeout as ``Queue.create_job`` settles it: its own, else the queue's default."""
    timeout = parse_timeout(seconds)
    if timeout is None:
        return default
    if timeout == 0:
        raise ValueError("0 timeout is not allowed. Use -1 for infinite timeout")
    return timeout


@receiver(setting_changed, dispatch_uid="rq_signals.queues.reset")
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("RQ_QUEUES", "RQ"):
        reset()
    elif setting == "RQ_SIGNALS" and _serializers and _serializers != [job_serializer()]:
        reset()  # ACCEPT_PICKLE changed: queues read jobs with another serializer
