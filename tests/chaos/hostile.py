"""Corrupt, truncated and hostile jobs, pushed straight onto the queues (never through a signal).

`signal_path_jobs` name the job function every async receiver uses, `rq_signals.jobs.run_receiver`,
with arguments no signal would produce. `corrupt_hashes` are job hashes with broken fields. Both are
written in the JSON envelope rq_signals writes, so they reach `run_receiver` (or rq's loading), and
must fail (failed registry, an error that says what was wrong) and run nothing. `code_running_jobs`
try to run code outside the registered receivers: a job naming another function (a canary,
``os.system``) or callback, in JSON or pickled by a plain rq `Queue`, or data and meta whose
unpickling calls a function; the workers' job gate must refuse each one before it runs.
`costly_jobs` would cost a worker its memory or its time: zlib bombs in data and meta, a payload
nested 900 deep, a set of ints whose hashes collide; each must fail at once, naming the limit.
"""

from __future__ import annotations

import base64
import functools
import pickle
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
from rq import Callback
from rq.job import Job
from rq.queue import Queue
from rq.webhook import Webhook

from tests.chaos.canary import Boom
from worker.serializers import JSONSerializer

JOB_FUNCTION = "rq_signals.jobs.run_receiver"
RECEIVER = "tests.chaos.receivers.run_default"  # registered, connected to work_default
SIGNAL = "tests.chaos.receivers.work_default"
POST_SAVE = "django.db.models.signals.post_save"
HUGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    kind: str
    expect: str  # what the failure's error text must contain
    push: Callable[[Queue, Path], str]  # pushes one job on the queue; its id
    envelope: Literal["json", "pickle"] = "json"  # the serializer of the queue `push` is given


def _payload(kwargs: Any, **extra: Any) -> dict[str, Any]:
    return {"format": 1, "signal": SIGNAL, "receiver": RECEIVER, "kwargs": kwargs, **extra}


def _call(*args: Any, **kwargs: Any) -> Callable[[Queue, Path], str]:
    def push(queue: Queue, sentinels: Path) -> str:
        resolved = [arg(sentinels) if callable(arg) else arg for arg in args]
        return queue.enqueue_call(JOB_FUNCTION, args=tuple(resolved), kwargs=kwargs).id

    return push


def _touch(name: str) -> Callable[[Path], str]:
    return lambda sentinels: f"touch {sentinels / name}"


def _deep(depth: int) -> Any:
    value: Any = {"__rqs__": "pickle", "v": "at the bottom"}
    for _ in range(depth):
        value = [value]
    return value


_UNKNOWN = "is not registered in this process"
_PAYLOAD = "PayloadError"
_NOT_CONNECTED = "not connected to signal"

signal_path_jobs: tuple[Hostile, ...] = (
    Hostile("unknown receiver id", _UNKNOWN, _call("tests.chaos.receivers.nope", SIGNAL, _payload({}))),
    Hostile(
        "receiver id os.system",
        _UNKNOWN,
        _call("os.system", POST_SAVE, lambda s: _payload({"command": f"touch {s / 'os-system-id'}"})),
    ),
    Hostile(
        "receiver id of an unregistered function",
        _UNKNOWN,
        _call("tests.chaos.canary.unregistered_canary", SIGNAL, _payload({})),
    ),
    Hostile("receiver id builtins.exec", _UNKNOWN, _call("builtins.exec", SIGNAL, "import os")),
    Hostile("signal path os.system", _NOT_CONNECTED, _call(RECEIVER, "os.system", _payload({"tag": "x"}))),
    Hostile("payload is a string", _PAYLOAD, _call(RECEIVER, SIGNAL, "rm -rf /")),
    Hostile("payload is a list", _PAYLOAD, _call(RECEIVER, SIGNAL, [1, 2, 3])),
    Hostile("payload is null", _PAYLOAD, _call(RECEIVER, SIGNAL, None)),
    Hostile("payload of format 2", _PAYLOAD, _call(RECEIVER, SIGNAL, _payload({"tag": "x"}, format=2))),
    Hostile("payload without kwargs", _PAYLOAD, _call(RECEIVER, SIGNAL, {"format": 1})),
    Hostile(
        "tag smuggling a pickle",
        _PAYLOAD,
        _call(
            RECEIVER,
            SIGNAL,
            _payload({"tag": {"__rqs__": "pickle", "v": base64.b64encode(pickle.dumps(Boom())).decode()}}),
        ),
    ),
    Hostile(
        "time zone path traversal",
        _PAYLOAD,
        _call(
            RECEIVER,
            SIGNAL,
            _payload(
                {"tag": {"__rqs__": "zoned_datetime", "v": ["2026-01-01T00:00", "../../../etc/passwd", 0]}}
            ),
        ),
    ),
    Hostile(
        "model label os.system",
        _PAYLOAD,
        _call(
            RECEIVER,
            SIGNAL,
            _payload({"tag": {"__rqs__": "model", "v": {"label": "os.system", "pk": 1, "mode": "ref"}}}),
        ),
    ),
    Hostile(
        "model class label builtins.eval",
        _PAYLOAD,
        _call(RECEIVER, SIGNAL, _payload({"tag": {"__rqs__": "model_class", "v": "builtins.eval"}})),
    ),
    Hostile("deeply nested payload", "Error", _call(RECEIVER, SIGNAL, _payload({"tag": _deep(400)}))),
    Hostile(
        "huge payload, unknown receiver",
        _UNKNOWN,
        _call("tests.chaos.receivers.huge", SIGNAL, _payload({"blob": "x" * HUGE_BYTES})),
    ),
    Hostile(
        "huge payload, bad format", _PAYLOAD, _call(RECEIVER, SIGNAL, {"format": 1, "blob": "y" * HUGE_BYTES})
    ),
    Hostile("too few arguments", "TypeError", _call(RECEIVER, SIGNAL)),
    Hostile("too many arguments", "TypeError", _call(RECEIVER, SIGNAL, _payload({}), "extra")),
    Hostile("receiver id not a string", "UnknownReceiver", _call(["os.system"], SIGNAL, _payload({}))),
    Hostile(
        "unexpected keyword argument",
        "TypeError",
        _call(RECEIVER, SIGNAL, _payload({}), receiver="os.system"),
    ),
)


def _corrupt(
    receiver: str = RECEIVER, **fields: bytes | Callable[[bytes], bytes]
) -> Callable[[Queue, Path], str]:
    """A valid job of `run_receiver` for `receiver`, then broken: `fields` of its hash overwritten."""

    def push(queue: Queue, sentinels: Path) -> str:
        args = (receiver, SIGNAL, _payload({"tag": "corrupt"}))
        job = Job.create(JOB_FUNCTION, args=args, connection=queue.connection, serializer=queue.serializer)
        job.origin = queue.name
        job.save()
        stored = queue.connection.hgetall(job.key)
        for name, value in fields.items():
            queue.connection.hset(job.key, name, value(stored[name.encode()]) if callable(value) else value)
        queue.connection.rpush(queue.key, job.id)
        return job.id

    return push


def _without(field: str, receiver: str) -> Callable[[Queue, Path], str]:
    """A valid job of `run_receiver` for `receiver`, its hash without `field` (rq always writes it)."""

    def push(queue: Queue, sentinels: Path) -> str:
        job = Job.create(
            JOB_FUNCTION,
            args=(receiver, SIGNAL, _payload({"tag": f"no {field}"})),
            connection=queue.connection,
            serializer=queue.serializer,
        )
        job.origin = queue.name
        job.save()
        queue.connection.hdel(job.key, field)
        queue.connection.rpush(queue.key, job.id)
        return job.id

    return push


def _garbage(size: int) -> bytes:
    return random.Random(size).randbytes(size)


_LOAD = "JobLoadError"
_NOT_OBJECT = "cannot load its meta: it is not a JSON object"

corrupt_hashes: tuple[Hostile, ...] = (
    Hostile("data is random bytes", _LOAD, _corrupt(data=_garbage(64))),
    Hostile("data truncated", _LOAD, _corrupt(data=lambda data: data[: len(data) // 2])),
    Hostile("data is JSON of the wrong shape", _LOAD, _corrupt(data=b'{"func": "os.system"}')),
    Hostile("data zlib of garbage", _LOAD, _corrupt(data=zlib.compress(_garbage(256)))),
    Hostile("data is empty", _LOAD, _corrupt(data=b"")),
    Hostile("data huge garbage", _LOAD, _corrupt(data=_garbage(HUGE_BYTES))),
    # rq reads unreadable meta as {"unserialized": ...} and runs the job: it still meets the allow-list
    Hostile("meta is garbage", _UNKNOWN, _corrupt("tests.chaos.receivers.nope", meta=_garbage(32))),
    Hostile("created_at is garbage", _LOAD, _corrupt(created_at=b"yesterday-ish")),
    Hostile("timeout is garbage", _LOAD, _corrupt(timeout=b"forever")),
    # valid JSON, but no object: rq's and our code call `meta.get` (it killed the workers)
    Hostile("meta is a JSON list", _NOT_OBJECT, _corrupt(meta=b"[1,2,3]")),
    Hostile("meta is a JSON string", _NOT_OBJECT, _corrupt(meta=b'"hello"')),
    Hostile("meta is JSON null", _NOT_OBJECT, _corrupt(meta=b"null")),
    # rq's horse monitor adds 60 to a job's timeout: loaded without one, it gets rq's default
    Hostile("timeout field missing", _UNKNOWN, _without("timeout", "tests.chaos.receivers.nope")),
)


@functools.cache
def zlib_bomb() -> bytes:
    """~300 KB of zlib that decompresses to 300 MiB: what rq's restore used to decompress in full."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    return b"".join(compressor.compress(chunk) for _ in range(300)) + compressor.flush()


def _bomb(field: str) -> Callable[[Queue, Path], str]:
    def push(queue: Queue, sentinels: Path) -> str:
        return _corrupt(**{field: zlib_bomb()})(queue, sentinels)

    return push


def _result_bomb(queue: Queue, sentinels: Path) -> str:
    """A job whose result stream already holds a failed result whose failure text is a zlib bomb (as
    rq writes results: base64 of zlib); it fails for its unknown receiver, a newer result on top.
    Whoever reads its results (django-rq's job page, `rqsignals failures`, this scenario) must not
    inflate the bomb."""
    args = ("tests.chaos.receivers.nope", SIGNAL, _payload({"tag": "result bomb"}))
    job = Job.create(JOB_FUNCTION, args=args, connection=queue.connection, serializer=queue.serializer)
    job.origin = queue.name
    job.save()
    bomb = base64.b64encode(zlib_bomb())
    queue.connection.xadd(f"rq:results:{job.id}", {"type": 2, "worker_name": "w", "exc_string": bomb})
    queue.connection.rpush(queue.key, job.id)
    return job.id


#: CPython hashes an int modulo this prime: its multiples all hash to 0.
_HASH_MODULUS = 2**61 - 1

costly_jobs: tuple[Hostile, ...] = (
    Hostile("data is a zlib bomb", "cannot load its data: it decompresses past 2097152 bytes", _bomb("data")),
    Hostile("meta is a zlib bomb", "cannot load its meta: it is larger than 262144 bytes", _bomb("meta")),
    Hostile("failure result is a zlib bomb", _UNKNOWN, _result_bomb),
    Hostile(
        "payload nested 900 deep",
        "nests deeper than the limit of 100",
        _call(RECEIVER, SIGNAL, _payload({"tag": _deep(900)})),
    ),
    Hostile(
        "set of ints with colliding hashes",
        "20000 of its 20000 items share the hash 0",
        _call(
            RECEIVER,
            SIGNAL,
            _payload({"tag": {"__rqs__": "set", "v": [i * _HASH_MODULUS for i in range(20000)]}}),
        ),
    ),
)


def _other_function(function: str, *args: Any, **options: Any) -> Callable[[Queue, Path], str]:
    def push(queue: Queue, sentinels: Path) -> str:
        resolved = [arg(sentinels) if callable(arg) else arg for arg in args]
        return queue.enqueue_call(function, args=tuple(resolved), **options).id

    return push


def _pickled(field: str) -> Callable[[Queue, Path], str]:
    """A job whose `field` (data or meta) unpickles into a call of the canary."""

    def push(queue: Queue, sentinels: Path) -> str:
        job = Job.create(
            JOB_FUNCTION,
            args=(RECEIVER, SIGNAL, _payload({"tag": "pickled"})),
            connection=queue.connection,
            serializer=queue.serializer,
        )
        job.origin = queue.name
        job.save()
        evil = (JOB_FUNCTION, None, (Boom(),), {}) if field == "data" else {"retry_policy": Boom()}
        raw = pickle.dumps(evil)
        queue.connection.hset(job.key, field, zlib.compress(raw) if field == "data" else raw)
        queue.connection.rpush(queue.key, job.id)
        return job.id

    return push


_NOT_ALLOWED = "is not allowed on this worker"
_PICKLED = "is pickled and this worker does not accept pickle"
_CANARY = "tests.chaos.canary.unregistered_canary"
_INTERNAL_URL = "http://127.0.0.1:9/latest/meta-data"  # discard port: nothing answers, nothing is sent

code_running_jobs: tuple[Hostile, ...] = (
    Hostile("job function: an unregistered canary", _NOT_ALLOWED, _other_function(_CANARY)),
    Hostile("job function: os.system", _NOT_ALLOWED, _other_function("os.system", _touch("os-system-json"))),
    Hostile("job function: the canary, pickled", _PICKLED, _other_function(_CANARY), envelope="pickle"),
    Hostile(
        "job function: os.system, pickled",
        _PICKLED,
        _other_function("os.system", _touch("os-system-function")),
        envelope="pickle",
    ),
    Hostile(
        "success callback: the canary",
        "success callback 'tests.chaos.canary.unregistered_canary' " + _NOT_ALLOWED,
        _other_function(
            JOB_FUNCTION, RECEIVER, SIGNAL, _payload({"tag": "cb"}), on_success=Callback(_CANARY)
        ),
    ),
    Hostile(
        "webhook: a loopback URL (SSRF)",
        f"webhook to '{_INTERNAL_URL}' " + _NOT_ALLOWED,
        _other_function(
            JOB_FUNCTION,
            RECEIVER,
            SIGNAL,
            _payload({"tag": "webhook"}),
            webhooks=[Webhook(_INTERNAL_URL, "finished"), Webhook(_INTERNAL_URL, "failed")],
        ),
    ),
    Hostile("job data unpickles a call", _PICKLED, _pickled("data"), envelope="pickle"),
    Hostile("job meta unpickles a call", "its meta " + _PICKLED, _pickled("meta")),
    Hostile(
        "undecodable data with a failure callback",
        f"failure callback '{_CANARY}' " + _NOT_ALLOWED,
        _corrupt(data=zlib.compress(b"{not json"), failure_callback_name=_CANARY.encode()),
    ),
)


def _forged_id(make_id: Callable[[str], str]) -> Callable[[Queue, Path], str]:
    """A proper job of `run_receiver`, its hash copied under an id rq would not accept, pushed there."""

    def push(queue: Queue, sentinels: Path) -> str:
        args = (RECEIVER, SIGNAL, _payload({"tag": "forged id"}))
        job = Job.create(JOB_FUNCTION, args=args, connection=queue.connection, serializer=queue.serializer)
        job.origin = queue.name
        job.save()
        job_id = make_id(job.id)
        queue.connection.hset(
            Job.redis_job_namespace_prefix + job_id, mapping=queue.connection.hgetall(job.key)
        )
        queue.connection.delete(job.key)
        queue.connection.rpush(queue.key, job_id)
        return job_id

    return push


def _with_policy(**policy: Any) -> Callable[[Queue, Path], str]:
    """A receiver call that fails (the receiver misses its `tag`), with `policy` as its retry policy."""

    def push(queue: Queue, sentinels: Path) -> str:
        args = (RECEIVER, SIGNAL, _payload({}))
        return queue.enqueue_call(JOB_FUNCTION, args=args, meta={"retry_policy": policy}).id

    return push


def _with_webhook(
    url: str, headers: dict[str, str] | None = None, receiver: str = RECEIVER
) -> Callable[[Queue, Path], str]:
    return _other_function(
        JOB_FUNCTION,
        receiver,
        SIGNAL,
        _payload({"tag": "webhook"}),
        webhooks=[Webhook(url, "finished", headers=headers), Webhook(url, "failed", headers=headers)],
    )


INVALID_ID = "invalid job id found in queue"
#: Where the redirect kind's webhook goes (under the allowed prefix); the sink answers it with a 302.
REDIRECTED_PATH = "/rq/redirect"


def edge_jobs(sink_url: str) -> tuple[Hostile, ...]:
    """Jobs at the edges of the gate and of rq's job ids, for workers allowing webhooks to
    ``<sink_url>/rq/``: a redirect, paths climbing out of it, Host and credential headers, ids with
    ``:``, ``*`` or a space. The redirect kind fails for its unknown receiver; its webhook must not
    reach where the redirect points."""
    allowed = f"{sink_url}/rq"
    return (
        Hostile(
            "webhook: allowed URL answering 302",
            _UNKNOWN,
            _with_webhook(sink_url + REDIRECTED_PATH, receiver="tests.chaos.receivers.nope"),
        ),
        Hostile("webhook: '..' path", "'..' path segment", _with_webhook(f"{allowed}/../admin/secret")),
        Hostile(
            "webhook: '%2e%2e' path", "'..' path segment", _with_webhook(f"{allowed}/%2e%2e/admin/secret")
        ),
        Hostile(
            "webhook: Host header", "header(s) Host", _with_webhook(f"{allowed}/x", {"Host": "internal"})
        ),
        Hostile(
            "webhook: Authorization header",
            "header(s) Authorization",
            _with_webhook(f"{allowed}/x", {"Authorization": "Bearer stolen"}),
        ),
        Hostile("job id with ':'", INVALID_ID, _forged_id(lambda job_id: f"{job_id}:forged")),
        Hostile("job id '*'", INVALID_ID, _forged_id(lambda job_id: f"*{job_id[:8]}")),
        Hostile("job id 'a b'", INVALID_ID, _forged_id(lambda job_id: f"a b{job_id[:8]}")),
    )


# Ids rq refuses in its started registry, and webhook header names that are not HTTP tokens: pushed
# before the workers start (rq's registry cleanup at start raised on such ids, and every worker quit).
INVALID_REGISTRY_ID = "invalid job id found in the registry"


def _in_started_registry(make_id: Callable[[str], str]) -> Callable[[Queue, Path], str]:
    """An entry rq refuses in the queue's started registry, expired long ago: rq's cleanup reads it."""

    def push(queue: Queue, sentinels: Path) -> str:
        job_id = make_id(Job.create(JOB_FUNCTION, connection=queue.connection).id)
        queue.connection.zadd(queue.started_job_registry.key, {job_id: 1})
        return job_id

    return push


def startup_edge_jobs(sink_url: str) -> tuple[Hostile, ...]:
    """Kinds pushed before the workers start: ids ``"a b"``, ``"*"`` and ``"<id>:e:x"`` in the started
    registries (each failed under its raw id), and a webhook to the allowed ``<sink_url>/rq/`` whose
    header name ``"Authorization "`` (urllib sends ``Authorization : ...``) must not pass the guard."""
    return (
        Hostile(
            "started registry id 'a b'", INVALID_REGISTRY_ID, _in_started_registry(lambda i: f"a b{i[:8]}")
        ),
        Hostile("started registry id '*'", INVALID_REGISTRY_ID, _in_started_registry(lambda i: f"*{i[:8]}")),
        Hostile(
            "started registry id 'x:y:z'", INVALID_REGISTRY_ID, _in_started_registry(lambda i: f"{i}:e:x")
        ),
        Hostile(
            "webhook: 'Authorization ' header",
            "is not an HTTP token",
            _with_webhook(f"{sink_url}/rq/x", {"Authorization ": "Bearer stolen"}),
        ),
    )


def push_junk(connection: redis.Redis, queue_names: tuple[str, ...], count: int) -> None:
    """`count` junk ids spread over the queues' intermediate lists, as if dequeued by workers that
    died: no job hashes, some with glob characters (``*``, ``[``); the rescue must drop them."""
    for n, name in enumerate(queue_names):
        ids = [f"junk-{n}-{i}" if i % 2 else f"*junk[{n}]{i}" for i in range(n, count, len(queue_names))]
        for start in range(0, len(ids), 10_000):
            connection.rpush(f"rq:queue:{name}:intermediate", *ids[start : start + 10_000])


_QUICK = {"max_retries": 1, "base": 0.05, "jitter": "none"}
_INVALID = "invalid retry_policy in its meta, so no retries: Backoff: "
_SECONDS = "must be a finite number of seconds"

#: Retry policies in a job's meta naming modules whose import runs code (`this` prints the Zen of
#: Python, `venv.__main__` exits the process), or numbers no clock can hold, or a spin. The module
#: names match no class and are never imported; the numbers fail the job at once, naming the field.
hostile_policies: tuple[Hostile, ...] = (
    Hostile("policy give_up_on this.x", "TypeError", _with_policy(**_QUICK, give_up_on=["this.x"])),
    Hostile(
        "policy give_up_on venv.__main__.x",
        "TypeError",
        _with_policy(**_QUICK, give_up_on=["venv.__main__.x"]),
    ),
    Hostile("policy retry_on this.x", "TypeError", _with_policy(**_QUICK, retry_on=["this.x"])),
    Hostile(
        "policy retry_on venv.__main__.x", "TypeError", _with_policy(**_QUICK, retry_on=["venv.__main__.x"])
    ),
    Hostile("policy base 1e12", f"{_INVALID}base {_SECONDS}", _with_policy(base=1e12, max_delay=1e12)),
    Hostile("policy max_delay inf", f"{_INVALID}max_delay {_SECONDS}", _with_policy(max_delay=float("inf"))),
    Hostile("policy base nan", f"{_INVALID}base {_SECONDS}", _with_policy(base=float("nan"))),
    Hostile("policy base negative", f"{_INVALID}base {_SECONDS}", _with_policy(base=-5.0)),
    Hostile(
        "policy max_retries 10**9, base 0",
        f"{_INVALID}max_retries must be between 0 and 1000",
        _with_policy(max_retries=10**9, base=0),
    ),
)


def push_all(
    connection: redis.Redis,
    kinds: tuple[Hostile, ...],
    count: int,
    sentinels: Path,
    queue_names: tuple[str, ...],
) -> Iterator[tuple[Hostile, str]]:
    """`count` jobs, the kinds in turn, spread over the queues; (kind, job id) for each.

    A kind's jobs go through a queue with its envelope's serializer: rq_signals' JSON, or rq's
    default pickle (a plain `Queue`, as anyone using rq would write it).
    """
    serializers = {"json": JSONSerializer, "pickle": None}
    for n in range(count):
        hostile = kinds[n % len(kinds)]
        name = queue_names[n % len(queue_names)]
        queue = Queue(name, connection=connection, serializer=serializers[hostile.envelope])
        yield hostile, hostile.push(queue, sentinels)
