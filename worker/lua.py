"""The text of a Lua script of ours, read once per process: `worker/scripts/*.lua` (scripts that touch
only our keys), or another folder's (`worker.rq_compat.layout` keeps the scripts that write rq's)."""

from __future__ import annotations

import functools
from pathlib import Path

SCRIPTS_DIR = Path(__file__).with_name("scripts")


@functools.cache
def script_text(name: str, folder: Path = SCRIPTS_DIR) -> str:
    """The text of `<folder>/<name>`."""
    return (folder / name).read_text()
