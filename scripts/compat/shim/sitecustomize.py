"""Loaded at start-up by every Python process of a compat run (PYTHONPATH points here).

Two jobs, both driven by environment variables the compat runner sets, so that rq's own test suite,
and every `rqworker` subprocess it starts, behaves the same way:

* RQ_COMPAT_REDIS_PORT: every redis-py connection to the default address (localhost:6379, which
  rq's tests hard-code and flush) goes to this port instead, the runner's private redis-server.
* RQ_COMPAT_SWAP: "Worker=worker.RetryWorker,SimpleWorker=worker.SimpleRetryWorker" puts our
  classes where rq's tests (and the `rq worker` command) look them up: `rq.Worker`,
  `rq.worker.Worker` and so on.

Then any other sitecustomize further down sys.path runs, as it would have without us.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_HOSTS = {"localhost", "127.0.0.1", "::1", "", None}
DEFAULT_PORT = 6379
#: Modules whose `Worker`/`SimpleWorker`/... names are replaced: where users and rq's tests import them from.
SWAPPED_IN = ("rq", "rq.worker")


def redirect_default_redis(port: int) -> None:
    """Point redis-py's default address (localhost:6379) at `port`, in this process and its forks."""
    from redis import connection

    original_init = connection.Connection.__init__
    if getattr(original_init, "_rq_compat", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.host in DEFAULT_HOSTS and int(self.port) == DEFAULT_PORT:
            self.host, self.port = "127.0.0.1", port

    original_connect = connection.Connection._connect

    def _connect(self: Any) -> Any:
        # Fail-safe: whatever changed host or port after __init__, never reach the shared server.
        if int(self.port) == DEFAULT_PORT:
            raise connection.ConnectionError(f"rq compat: refusing to connect to {self.host}:{DEFAULT_PORT}")
        return original_connect(self)

    __init__._rq_compat = True  # type: ignore[attr-defined]
    connection.Connection.__init__ = __init__  # type: ignore[method-assign]
    connection.Connection._connect = _connect  # type: ignore[method-assign]


def swap_worker_classes(spec: str) -> None:
    """Apply "Name=dotted.path,..." to every module in SWAPPED_IN that exports Name."""
    for pair in filter(None, (part.strip() for part in spec.split(","))):
        name, _, dotted = pair.partition("=")
        module_name, _, attr = dotted.rpartition(".")
        replacement = getattr(importlib.import_module(module_name), attr)
        for target_name in SWAPPED_IN:
            target = importlib.import_module(target_name)
            if not hasattr(target, name):
                raise AttributeError(f"rq compat: {target_name} has no {name!r} to swap for {dotted}")
            setattr(target, name, replacement)


def chain_next_sitecustomize() -> None:
    here = Path(__file__).resolve().parent
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "sitecustomize.py"
        if candidate.parent != here and candidate.is_file():
            code = compile(candidate.read_text(), str(candidate), "exec")
            exec(code, {"__name__": "sitecustomize", "__file__": str(candidate)})
            return


try:
    if os.environ.get("RQ_COMPAT_REDIS_PORT"):
        redirect_default_redis(int(os.environ["RQ_COMPAT_REDIS_PORT"]))
    if os.environ.get("RQ_COMPAT_SWAP"):
        swap_worker_classes(os.environ["RQ_COMPAT_SWAP"])
except Exception:
    # site.py would print one line and go on without us: against the shared Redis, or with rq's classes.
    import traceback

    traceback.print_exc()
    sys.stderr.write("rq compat: sitecustomize failed; exiting rather than run unredirected or unswapped\n")
    os._exit(3)
chain_next_sitecustomize()
