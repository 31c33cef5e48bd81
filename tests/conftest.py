"""Session-wide harness: one private redis-server per test session, never the shared one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support import session_redis
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = session_redis.server()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private server's URL, empty and answering at the start of each test."""
    redis_server.start()  # a fault test may have stopped it
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    conn.close()
    yield redis_server.url


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()
