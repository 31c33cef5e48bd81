"""The text of our Lua scripts (`worker/scripts/*.lua`), read once per process."""

from __future__ import annotations

import functools
from pathlib import Path

SCRIPTS_DIR = Path(__file__).with_name("scripts")


@functools.cache
def script_text(name: str) -> str:
    """The text of `worker/scripts/<name>`."""
    return (SCRIPTS_DIR / name).read_text()
