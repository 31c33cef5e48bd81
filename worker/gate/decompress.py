"""Decompressing what a job stores (data, failure text, results) within a bound on its size."""

from __future__ import annotations

import zlib


def decompress_bounded(raw: bytes, limit: int) -> bytes | None:
    """`raw` decompressed, or `raw` itself if it is not a whole zlib stream (as rq's restore does);
    None if the result would be longer than `limit` bytes. Never holds more than `limit` + 1 bytes."""
    decompressor = zlib.decompressobj()
    try:
        out = decompressor.decompress(raw, limit + 1)
    except zlib.error:
        out = None
    if out is not None and len(out) > limit:
        return None
    if out is None or not decompressor.eof:  # not zlib, or a truncated stream: rq keeps it as stored
        return raw if len(raw) <= limit else None
    return out
