"""Canaries: importable functions that must never run on a worker, because no receiver registers them.

Each one leaves a file in ``RQ_SIGNALS_CHAOS_SENTINEL_DIR`` (or in the path it is given) when it is
called, so a test proves it was not by the file's absence.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

SENTINEL_DIR_ENV = "RQ_SIGNALS_CHAOS_SENTINEL_DIR"


def unregistered_canary(*args: Any, **kwargs: Any) -> str:
    """A module-level function with a receiver's signature, never decorated with @async_receiver."""
    folder = Path(os.environ.get(SENTINEL_DIR_ENV) or ".")
    (folder / f"canary-{os.getpid()}-{uuid.uuid4().hex[:8]}").write_text(repr((args, kwargs))[:1000])
    return "canary ran"


class Boom:
    """Unpickling this (``__reduce__``) calls `unregistered_canary`: a pickle that runs code when loaded."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (unregistered_canary, ("unpickled",))
