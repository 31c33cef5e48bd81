"""What keeps a worker's background threads alive: every error is logged, none ends the thread.

A thread of ours (crash recovery, retry promotion, maintenance chores, lease renewal, fencing) that
ended on an exception would stop its duty silently while the worker goes on taking jobs: the worst
kind of failure. `BaseException` is caught too, since a `SystemExit` raised in a thread ends only
that thread, without a word. The one exception let through is the interpreter's own shutdown.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def surviving(log: logging.Logger, subject: str, then: str = "carrying on") -> Iterator[None]:
    """Log anything raised inside and carry on, unless Python itself is exiting.

    The line reads `<subject>: failed; <then> (<type>: <message>)` with the traceback:
    `Job 3f2a...: lease renewal: failed; next in 5s (ConnectionError: ...)`.
    """
    try:
        yield
    except BaseException as exc:
        if sys.is_finalizing():
            raise
        log.error("%s: failed; %s (%s: %s)", subject, then, type(exc).__name__, exc, exc_info=exc)
