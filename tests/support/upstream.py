"""rq's own worker classes as the tests' reference, without rq's exit hang under redis-py 8.2.0.

rq 3.0.0 runs its pub/sub thread with a 60 s read; with redis-py 8.2.0 its exit now and then waits
those 60 s (docs/compat.md), long enough for the worker hash rq leaves behind (60 s TTL) to expire.
These subclasses only skip the pub/sub subscription (rq's stop-job and shutdown commands, which the
tests using them never send); every write the tests compare is rq's own.
"""

from __future__ import annotations

from rq.worker import SimpleWorker, Worker


class RqWorker(Worker):
    def subscribe(self) -> None:
        """No pub/sub thread (see the module docstring)."""


class RqSimpleWorker(SimpleWorker):
    def subscribe(self) -> None:
        """No pub/sub thread (see the module docstring)."""
