"""Session-wide harness: one private redis-server per test session, never the shared one."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def rq_logs_reach_caplog() -> Iterator[None]:
    """Each test sees rq's and our worker logs in `caplog`, whatever ran before it.

    rq's `setup_loghandlers` (run by every in-process `worker.work()`) sets the ``rq.worker`` and
    ``rq.job`` loggers' level (``logging_level="CRITICAL"`` in some tests) and turns their propagation
    off when it finds no handler; `caplog` listens on the root logger, so a later test asserting a
    ``rq.worker.*`` log line saw nothing, depending on the random order.
    """
    for name in ("rq.worker", "rq.job"):
        logger = logging.getLogger(name)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    yield
