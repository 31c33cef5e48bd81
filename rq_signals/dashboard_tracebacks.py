"""A stored traceback split for people: whole lines, the receiver's own frames apart from library frames.

An attempt keeps the last 2,000 characters of its traceback (`worker.retries.attempts.TRACEBACK_TAIL_CHARS`),
so it may start mid-line: that partial line is dropped. A frame is "library" when its file is in
site-packages, the standard library, rq, rq_signals or worker; the rest are the project's own.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from functools import cache

import rq

import rq_signals
import worker

FRAME_PREFIX = '  File "'


@dataclass(frozen=True)
class Frame:
    text: str  # the ``File ...`` line and the source lines under it
    library: bool


@dataclass(frozen=True)
class Traceback:
    frames: tuple[Frame, ...]
    error: str  # the lines after the frames: the exception, chained causes' headers
    cut: bool  # the stored text was the tail of a longer traceback

    @property
    def own(self) -> tuple[Frame, ...]:
        return tuple(frame for frame in self.frames if not frame.library)

    @property
    def library(self) -> tuple[Frame, ...]:
        return tuple(frame for frame in self.frames if frame.library)

    @property
    def text(self) -> str:
        return "\n".join([*(frame.text for frame in self.frames), self.error])


def split_traceback(text: str) -> Traceback:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _starts_whole(line)), len(lines))
    cut = start > 0
    frames: list[Frame] = []
    other: list[str] = []
    current: list[str] = []
    for line in lines[start:]:
        if line.startswith(FRAME_PREFIX):
            _close(current, frames)
            current = [line]
        elif current and line.startswith("    "):
            current.append(line)
        else:
            _close(current, frames)
            current = []
            if not line.startswith("Traceback ("):
                other.append(line)
    _close(current, frames)
    return Traceback(tuple(frames), "\n".join(other).strip(), cut)


def _starts_whole(line: str) -> bool:
    return line.startswith(("Traceback (", FRAME_PREFIX))


def _close(current: list[str], frames: list[Frame]) -> None:
    if current:
        path = current[0][len(FRAME_PREFIX) :].split('"', 1)[0]
        frames.append(Frame("\n".join(current), is_library(path)))


def is_library(path: str) -> bool:
    normalized = path.replace("\\", "/")
    if "/site-packages/" in normalized or "/dist-packages/" in normalized or normalized.startswith("<"):
        return True
    return any(normalized.startswith(prefix) for prefix in _library_dirs())


@cache
def _library_dirs() -> tuple[str, ...]:
    dirs = {os.path.dirname(module.__file__ or "") for module in (rq, rq_signals, worker)}
    dirs.add(sysconfig.get_paths()["stdlib"])
    return tuple(d.replace("\\", "/") + "/" for d in dirs if d)
