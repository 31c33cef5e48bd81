"""Queue name to RQ queue, through django-rq's ``RQ_QUEUES``; the one place that knows connections.

``django_rq.get_queue()`` opens a new Redis connection (pool) per call, which costs a connect per
save; here each queue is built once and queues with the same connection settings share one Redis
client, so a transaction's jobs can go out in one pipeline per Redis server. Everything is rebuilt
when ``RQ_QUEUES`` or ``RQ`` change (``override_settings``).

Jobs are written and read with the serializer of the workers' gate (`job_gate`): JSON, or JSON and
pickle under ``RQ_SIGNALS["ACCEPT_PICKLE"]``; never rq's default pickle for what we write.

`write_jobs` writes new jobs as rq 3.0's ``Queue.enqueue_many`` leaves them in Redis (the job hash,
the queue list, the ``rq:queues`` set; ``Job.fetch`` reads each back as the job rq would have
built), without building an rq ``Job`` per job: one Lua script per queue, five values per job. It
serves plain queues only (`writes_directly`); other queues go through rq.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import django_rq
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_rq.connection_utils import filter_connection_params, get_redis_connection
from django_rq.queues import DjangoRQ
from redis import Redis
from redis.client import Pipeline
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer as RqJSONSerializer
from rq.serializers import Serializer
from rq.utils import get_call_string, parse_timeout, utcformat

from rq_signals import defaults
from rq_signals.conf import conf
from worker.gate.gate import JobGate
from worker.gate.limits import JobLimits
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

    Installed for every worker by ``AppConfig.ready()`` (`worker.gate.gate.install_job_gate`).
    """
    return JobGate(
        (defaults.JOB_FUNCTION, *conf.allowed_job_functions),
        accept_pickle=conf.accept_pickle is True,
        functions_setting='RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]',
        pickle_setting='RQ_SIGNALS["ACCEPT_PICKLE"] = True',
        allowed_webhook_urls=conf.allowed_webhook_urls,
        webhooks_setting='RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]',
    )


def job_limits() -> JobLimits:
    """How large a job's data and meta may be where this process loads one (workers, dashboard):
    ``RQ_SIGNALS["MAX_JOB_DATA_BYTES"]`` and ``["MAX_JOB_META_BYTES"]``.

    Installed for every worker by ``AppConfig.ready()`` (`worker.gate.limits.install_job_limits`).
    """
    return JobLimits(
        max_data_bytes=conf.max_job_data_bytes,
        max_meta_bytes=conf.max_job_meta_bytes,
        data_setting='RQ_SIGNALS["MAX_JOB_DATA_BYTES"]',
        meta_setting='RQ_SIGNALS["MAX_JOB_META_BYTES"]',
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

    @property
    def args_json(self) -> str:
        """`job_args` as JSON text (written as they are under a JSON serializer)."""
        ...

    def job_args(self) -> tuple[Any, ...]: ...


def writes_directly(queue: Queue) -> bool:
    """Whether `write_jobs` may stand in for ``queue.enqueue_many``: a plain, asynchronous rq queue."""
    return type(queue) in _PLAIN_QUEUE_CLASSES and queue.job_class is Job and bool(queue._is_async)


def write_jobs(
    client: Redis[bytes] | Pipeline[Any],
    queue: Queue,
    function: str,
    jobs: Sequence[NewJob],
    *,
    now: datetime,
) -> None:
    """Write on `client` (now) or queue on a pipeline what ``queue.enqueue_many`` writes for `jobs`.

    One ``EVAL`` of `WRITE_JOBS_SCRIPT` (no dependencies, TTLs, callbacks): the queue's key added to
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
    default_timeout = queue._default_timeout
    timeouts: dict[int | None, str] = {}
    metas: dict[int, bytes] = {}  # one serialization per meta object: a receiver's jobs share theirs
    keys: list[str] = [queue.redis_queues_keys, queue.key]
    argv: list[str | bytes] = [utcformat(now), queue.name]
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
        keys.append(_JOB_KEY_PREFIX + job.job_id)
        argv += (job.job_id, zlib.compress(data), description, timeout, packed)
    # EVAL with the text, not EVALSHA: one round trip always (Redis caches the compiled script).
    client.execute_command("EVAL", WRITE_JOBS_SCRIPT, len(keys), *keys, *argv)


_JOB_KEY_PREFIX: Final = Job.redis_job_namespace_prefix
#: Serializers whose ``dumps`` is ``json.dumps(value).encode()`` for JSON values: `write_jobs` writes
#: the job's call as JSON text it assembles around the already encoded payload.
_JSON_SERIALIZERS: Final[tuple[object, ...]] = (JSONSerializer, JSONOrPickleSerializer, RqJSONSerializer)

#: ``write_jobs``: KEYS = rq:queues, the queue's list, then one rq:job:<id> per job; ARGV = the
#: created_at/enqueued_at stamp, the queue's name (origin), then per job: id, data (zlib), description,
#: timeout, meta ('' for none). The fields rq's ``Job.to_dict`` writes empty for a job that has not
#: run (callback names, started_at, ended_at, last_heartbeat, worker_name, group_id) are left out:
#: ``Job.restore`` reads an absent field as it reads an empty one. SADD first: under maxmemory a
#: script is refused at its first write or not at all; the ids before the hashes, so a queue key of
#: the wrong type fails the script before it writes a hash.
WRITE_JOBS_SCRIPT: Final = """
redis.call('SADD', KEYS[1], KEYS[2])
local per_job, first = 5, 3
for from = first, #KEYS, 1000 do
  local ids = {}
  for i = from, math.min(from + 999, #KEYS) do
    ids[#ids + 1] = ARGV[first + (i - first) * per_job]
  end
  redis.call('RPUSH', KEYS[2], unpack(ids))
end
local stamp, origin = ARGV[1], ARGV[2]
for i = first, #KEYS do
  local a = first + (i - first) * per_job
  if ARGV[a + 4] == '' then
    redis.call('HSET', KEYS[i], 'status', 'queued', 'created_at', stamp, 'data', ARGV[a + 1],
      'origin', origin, 'description', ARGV[a + 2], 'enqueued_at', stamp, 'timeout', ARGV[a + 3])
  else
    redis.call('HSET', KEYS[i], 'status', 'queued', 'created_at', stamp, 'data', ARGV[a + 1],
      'origin', origin, 'description', ARGV[a + 2], 'enqueued_at', stamp, 'timeout', ARGV[a + 3],
      'meta', ARGV[a + 4])
  end
end
return #KEYS - 2
"""


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
