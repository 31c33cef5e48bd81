"""Queue name to RQ queue, through django-rq's ``RQ_QUEUES``; the one place that knows connections.

``django_rq.get_queue()`` opens a new Redis connection (pool) per call, which costs a connect per
save; here each queue is built once and queues with the same connection settings share one Redis
client, so a transaction's jobs can go out in one pipeline per Redis server. Everything is rebuilt
when ``RQ_QUEUES`` or ``RQ`` change (``override_settings``).

Jobs are written and read with the serializer of the workers' gate (`rq_signals.gate.job_serializer`):
JSON, or JSON and pickle under ``RQ_SIGNALS["ACCEPT_PICKLE"]``; never rq's default pickle for what we
write. Writing jobs is `rq_signals.jobwriter`'s.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import django_rq
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_rq.connection_utils import get_redis_connection
from redis import Redis
from rq.queue import Queue
from rq.serializers import Serializer

from rq_signals import connections
from rq_signals.conf import conf
from rq_signals.gate import job_serializer

_lock = threading.Lock()
_queues: dict[str, Queue] = {}
_connections: dict[str, Redis[bytes]] = {}
_server_versions: dict[str, tuple[int, int, int]] = {}
_connection_keys: dict[str, str] = {}
_serializers: list[Serializer] = []  # the serializer the cached queues were built with (none built: empty)


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


def connection_key(name: str) -> str:
    """Equal for queues that share a Redis connection (the same connection settings in RQ_QUEUES)."""
    key = _connection_keys.get(name)
    if key is None:
        key = _connection_keys[name] = connections.connection_key(conf.queues[name])
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


@receiver(setting_changed, dispatch_uid="rq_signals.queues.reset")
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("RQ_QUEUES", "RQ"):
        reset()
    elif setting == "RQ_SIGNALS" and _serializers and _serializers != [job_serializer()]:
        reset()  # ACCEPT_PICKLE changed: queues read jobs with another serializer


def _new_lock_in_child() -> None:
    """After ``fork()``: a fresh lock. Another thread (the background writer, `rq_signals.flusher`) may
    have been building a queue (a connect and an INFO under `_lock`) when this one forked: in the
    child nobody would ever release it."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)
