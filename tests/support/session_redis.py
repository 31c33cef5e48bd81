"""The one private redis-server of a test session.

Started on first use (by `tests/settings.py` or the `redis_server` fixture,
whichever comes first) and killed by its pid when the session ends. Its URL
is exported as RQ_SIGNALS_TEST_REDIS_URL, so worker subprocesses started by
tests read the same server instead of starting their own.
"""

from __future__ import annotations

import atexit
import os

from tests.support.redis_server import RedisServer

ENV_VAR = "RQ_SIGNALS_TEST_REDIS_URL"
_server: RedisServer | None = None


def server() -> RedisServer:
    global _server
    if _server is None:
        _server = RedisServer().start()
        os.environ[ENV_VAR] = _server.url
        atexit.register(_server.cleanup)
    return _server


def url() -> str:
    """The session's Redis URL: inherited from the parent test process, or our own server's."""
    return os.environ.get(ENV_VAR) or server().url
