"""Redis clients of our own, cloned from the one we are given: the same server and options, its own pool.

A worker gives its threads and its work loop clients of their own (`worker.safety.reconnect`,
`worker.retries.promoter`). A client built by django-rq or rq from ``SENTINELS``/``MASTER_NAME`` has a
`SentinelConnectionPool`, which cannot be rebuilt from its connection options alone: its clone goes
through the same sentinels, and reconnects wherever Sentinel says the master now is (`worker.sentinel`).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.connection import ConnectionPool

from worker import sentinel


def clone_client(connection: Redis[Any]) -> Redis[Any]:
    """A client of its own (its own pool) to the server `connection` talks to, with the same options."""
    return type(connection)(connection_pool=clone_pool(connection.connection_pool))


def following(connection: Redis[Any]) -> Redis[Any]:
    """`connection` as it is, except that a client through Sentinel (its pool not yet connected) now
    reconnects wherever Sentinel names the master, and drops its connections when it switches."""
    pool = connection.connection_pool
    if sentinel.is_sentinel_pool(pool):
        sentinel.follow(pool)
    return connection


def clone_pool(pool: ConnectionPool) -> ConnectionPool:
    if sentinel.is_sentinel_pool(pool):
        return sentinel.clone_pool(pool)
    return type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
