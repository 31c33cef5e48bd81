"""Memory of processes under test: a zlib bomb to feed them, their peak resident set while they chew."""

from __future__ import annotations

import os
import threading
import zlib

import psutil


def zlib_bomb(decompressed_bytes: int) -> bytes:
    """zlib that decompresses to `decompressed_bytes` zeros (about 1/1000 of that, compressed)."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(decompressed_bytes // len(chunk))]
    return b"".join(parts) + compressor.flush()


class PeakRss:
    """The largest resident set of a process (this one by default) and its children, in bytes,
    polled every 5 ms in a thread while the ``with`` block runs."""

    def __init__(self, pid: int | None = None) -> None:
        self.process = psutil.Process(pid if pid is not None else os.getpid())
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                family = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, max(p.memory_info().rss for p in family))
            except psutil.Error:  # a work horse that just exited
                pass
            self._done.wait(0.005)
