"""Are this host's workers alive, and are waiting retries served? (``rqsignals health``, the probe)

Run as ``python -m rq_signals.health`` (`rq_signals.health.__main__`, no ``django.setup()``) or
``manage.py rqsignals health``; both parse options and answer through `rq_signals.health.cli`. This
module imports neither rq nor django-rq (`rq_signals.connections`), so the probe starts fast.

For liveness and readiness probes, so it only reads Redis (SMEMBERS, HGETALL, ZCARD, GET: no write,
nothing created) and answers in one round trip per Redis server. Healthy means:

- at least one worker on `host` serves the queues asked about (rq's ``rq:workers:<queue>`` sets and
  ``rq:worker:<name>`` hashes, which every rq worker keeps);
- each of them is alive: no ``death`` in its hash, its pid running (when `host` is this machine and
  `check_pids`), and its ``last_heartbeat`` at most `max_age_seconds` old;
- each of those queues whose scheduled registry (``rq:scheduled:<queue>``) holds jobs has a live
  retry worker: the promoter of one of our classes holds the queue's promoter lease
  (`worker.keys.promoter_lease`, renewed every second, 3 s TTL) and names itself there. rq's worker
  hash does not record the worker class; the lease does, and only our classes take it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from redis import Redis

from rq_signals.conf import conf
from rq_signals.connections import connection_key, redis_connection
from worker import keys

#: rq's worker key lifetime after a heartbeat (``worker_ttl`` 420 s + 60 s): an idle worker blocked in
#: its pop heartbeats only every ``worker_ttl - 15`` seconds, so a younger heartbeat proves nothing.
DEFAULT_MAX_AGE_SECONDS = 480.0


@dataclass(frozen=True)
class WorkerState:
    """One worker as its rq hash describes it."""

    name: str
    hostname: str
    pid: int | None
    queues: tuple[str, ...]
    heartbeat_age: float | None  # seconds since `last_heartbeat`; None: unreadable
    dead: bool  # the hash records a death


@dataclass(frozen=True)
class Health:
    """What `check` found: `problems` empty means healthy; `summary` is the line to print."""

    problems: tuple[str, ...]
    summary: str

    @property
    def ok(self) -> bool:
        return not self.problems


def default_host() -> str:
    """This machine's name as rq writes it into a worker hash."""
    return socket.gethostname()


def check(
    *,
    host: str | None = None,
    queue_names: Sequence[str] = (),
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    check_pids: bool = True,
) -> Health:
    """Health of `host`'s workers on `queue_names` (default: every queue they serve)."""
    host = host or default_host()
    unknown = [name for name in queue_names if name not in conf.queues]
    if unknown:
        raise KeyError(f"queue {unknown[0]!r} is not in RQ_QUEUES ({', '.join(sorted(conf.queues))})")
    names = list(queue_names) or sorted(conf.queues)
    workers, waiting, leases = _read(names)
    mine = [w for w in workers.values() if w.hostname == host and set(w.queues) & set(names)]
    if not mine:
        where = f"queue(s) {', '.join(queue_names)}" if queue_names else "any queue in RQ_QUEUES"
        return Health((f"no worker on host {host!r} serves {where}",), "")
    pids = check_pids and host == default_host()
    problems = [problem for w in mine if (problem := _worker_problem(w, max_age_seconds, pids))]
    served = sorted({q for w in mine for q in w.queues} & set(names))
    for queue in served:
        if waiting.get(queue):
            problems.extend(_retry_problem(queue, waiting[queue], leases.get(queue), workers))
    summary = f"{len(mine)} worker(s) on {host} serving {', '.join(served)}: ok"
    return Health(tuple(problems), summary)


def unserved_retries(queue_names: Sequence[str]) -> dict[str, int]:
    """Queues of `queue_names` whose scheduled registry holds jobs that no retry worker serves: how many.

    Served means a live worker holds the queue's promoter lease (`worker.keys.promoter_lease`, 3 s
    TTL, renewed every second), so a queue is named once no retry worker was seen for a lease's life.
    What the dashboard's banner shows; reads only, as `check` does.
    """
    names = [name for name in queue_names if name in conf.queues]
    if not names:
        return {}
    workers, waiting, leases = _read(names)
    return {
        queue: waiting[queue]
        for queue in names
        if waiting.get(queue) and _retry_problem(queue, waiting[queue], leases.get(queue), workers)
    }


def _worker_problem(worker: WorkerState, max_age_seconds: float, check_pid: bool) -> str | None:
    if worker.dead:
        return f"worker {worker.name} has stopped (its hash records a death)"
    if check_pid and worker.pid is not None and not _pid_running(worker.pid):
        return f"worker {worker.name} (pid {worker.pid}) is not running on this host"
    if worker.heartbeat_age is None or worker.heartbeat_age > max_age_seconds:
        age = "unreadable" if worker.heartbeat_age is None else f"{worker.heartbeat_age:.0f}s old"
        return f"worker {worker.name}: last heartbeat {age} (more than {max_age_seconds:g}s); is it hung?"
    return None


def _retry_problem(
    queue: str, waiting: int, holder: str | None, workers: dict[str, WorkerState]
) -> list[str]:
    alive = holder is not None and holder in workers and not workers[holder].dead
    if alive:
        return []
    return [
        f"queue {queue!r} has {waiting} job(s) waiting in its scheduled registry and no retry worker "
        "serves it (no promoter of worker.RetryWorker, SimpleRetryWorker or PreforkRetryWorker holds "
        f"{keys.promoter_lease(queue)}); run one of them on {queue!r}"
    ]


def _read(names: list[str]) -> tuple[dict[str, WorkerState], dict[str, int], dict[str, str | None]]:
    """Workers, scheduled-registry sizes and promoter-lease holders: one read pipeline per Redis server."""
    by_server: dict[str, list[str]] = {}
    for name in names:
        by_server.setdefault(connection_key(conf.queues[name]), []).append(name)
    workers: dict[str, WorkerState] = {}
    waiting: dict[str, int] = {}
    leases: dict[str, str | None] = {}
    for server_queues in by_server.values():
        # A client per call, closed after it (the dashboard asks on every page load).
        with redis_connection(conf.queues[server_queues[0]]) as redis:
            replies = _queue_replies(redis, server_queues)
            worker_keys: set[str] = set()
            for index, queue in enumerate(server_queues):
                members, count, holder = replies[3 * index : 3 * index + 3]
                worker_keys.update(_text(member) for member in members)
                waiting[queue] = int(count)
                leases[queue] = _text(holder) if holder is not None else None
            workers.update(_workers(redis, sorted(worker_keys | _lease_keys(leases))))
    return workers, waiting, leases


def _queue_replies(redis: Redis[bytes], queue_names: list[str]) -> list[Any]:
    """Per queue: its workers' names (a set), its scheduled registry's size, its promoter lease's holder."""
    with redis.pipeline(transaction=False) as pipe:
        for queue in queue_names:
            pipe.smembers(f"rq:workers:{queue}")
            pipe.zcard(f"rq:scheduled:{queue}")
            pipe.get(keys.promoter_lease(queue))
        replies: list[Any] = pipe.execute()
    return replies


def _text(value: bytes | str) -> str:
    """A Redis reply as text (rq writes its hashes and sets as UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value


def _lease_keys(leases: dict[str, str | None]) -> set[str]:
    return {f"rq:worker:{holder}" for holder in leases.values() if holder}


def _workers(redis: Redis[bytes], worker_keys: list[str]) -> dict[str, WorkerState]:
    with redis.pipeline(transaction=False) as pipe:
        for key in worker_keys:
            pipe.hgetall(key)
        hashes: list[dict[bytes, bytes]] = pipe.execute()
    states = (_state(key, raw) for key, raw in zip(worker_keys, hashes, strict=True) if raw)
    return {state.name: state for state in states}


def _state(key: str, raw: dict[bytes, bytes]) -> WorkerState:
    fields: dict[str, str] = {_text(k): _text(v) for k, v in raw.items()}
    pid = fields.get("pid", "")
    return WorkerState(
        name=key.removeprefix("rq:worker:"),
        hostname=fields.get("hostname", ""),
        pid=int(pid) if pid.isdigit() else None,
        queues=tuple(q for q in fields.get("queues", "").split(",") if q),
        heartbeat_age=_age(fields.get("last_heartbeat")),
        dead="death" in fields,
    )


def _age(stamp: Any) -> float | None:
    try:
        beat = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - beat).total_seconds()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    return True
