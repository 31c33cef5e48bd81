"""Serializers of the rq job envelope (the ``data`` and ``meta`` fields of ``rq:job:<id>``) without pickle.

rq stores a job's function name, arguments and meta with its default serializer, pickle, so whoever
can write a job hash to Redis can make a worker that loads it call any function (a ``__reduce__``
runs on ``pickle.loads``). A worker behind a `worker.gate.gate.JobGate` loads jobs with one of these:

- `JSONSerializer` writes what rq's ``rq.serializers.JSONSerializer`` writes (UTF-8 JSON) and reads
  JSON only. Pickled bytes are refused with `PickleRefused`, which says so; ``pickle`` is never called.
- `JSONOrPickleSerializer` reads both (pickle is told apart by its first byte: protocol 2 and later
  start with ``0x80``, which no JSON text does) and writes JSON when the value is JSON-encodable, else
  pickle. For a gate that accepts pickle: pickled jobs enqueued by plain rq still run.

As with rq's JSONSerializer, JSON turns tuples into lists and non-string dict keys into strings; rq
unpacks the job's ``(func_name, instance, args, kwargs)`` from a list as well as from a tuple.

Both check JSON before ``json.loads`` (`check_json`): text longer than ``max_json_bytes`` or nested
deeper than ``max_json_depth`` (class attributes; subclass to change them) raises `JSONRefused`, so
a forged job can neither make the decoder recurse until ``RecursionError`` nor decode for long.
"""

from __future__ import annotations

import json
import pickle
import re
from array import array
from itertools import accumulate
from typing import Any, ClassVar, Final

from worker.exceptions import WorkerError

#: The first byte of pickle protocols 2 to 5 (the PROTO opcode); no JSON text starts with it.
PICKLE_MARK: Final = b"\x80"


class PickleRefused(WorkerError, ValueError):
    """Bytes to load are pickled, and the serializer refuses pickle (unpickling can run any code)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(
            f"the data is pickled (starts with {bytes(data[:2])!r}) and pickle is refused, since "
            "unpickling can run any code; enqueue the job with a JSON serializer, or accept pickle on "
            "the worker's job gate (worker.gate.JobGate(accept_pickle=True))"
        )


#: Deepest nesting of JSON arrays and objects the serializers decode (payloads nest a few levels).
MAX_JSON_DEPTH: Final = 100
#: Longest JSON text the serializers decode, in bytes (job data is already bounded by `worker.gate.limits`).
MAX_JSON_BYTES: Final = 16 * 1024 * 1024

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1, +1, -1, -1 as signed bytes


class JSONRefused(WorkerError, ValueError):
    """JSON text refused before decoding: too long or nested too deeply."""


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text `data` (brackets inside strings ignored)."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    steps = _JSON_STRING.sub(b"", data).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0)


def check_json(
    data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES
) -> bytes:
    """`data` as bytes, if it is at most `max_bytes` long and nests at most `max_depth` deep."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JSONRefused(f"the JSON text is {len(raw)} bytes long, more than the limit of {max_bytes}")
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:
        raise JSONRefused(f"the JSON text nests deeper than the limit of {max_depth} arrays and objects")
    return raw


def is_pickle(data: bytes | bytearray | memoryview | str) -> bool:
    """Whether `data` is pickled with protocol 2 or later (rq pickles with the highest protocol)."""
    return not isinstance(data, str) and bytes(data[:1]) == PICKLE_MARK


class JSONSerializer:
    """UTF-8 JSON, as rq's JSONSerializer writes it; pickled bytes raise `PickleRefused`, never unpickled."""

    max_json_depth: ClassVar[int] = MAX_JSON_DEPTH
    max_json_bytes: ClassVar[int] = MAX_JSON_BYTES

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        return json.dumps(obj).encode("utf-8")

    @classmethod
    def loads(cls, data: bytes, /) -> Any:
        if is_pickle(data):
            raise PickleRefused(data)
        return json.loads(check_json(data, max_depth=cls.max_json_depth, max_bytes=cls.max_json_bytes))


class JSONOrPickleSerializer:
    """Reads JSON and pickle (told apart by the first byte); writes JSON when it can, else pickle."""

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        try:
            return json.dumps(obj).encode("utf-8")
        except (TypeError, ValueError):  # not JSON-encodable (an instance, a set, a circular value)
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    max_json_depth: ClassVar[int] = MAX_JSON_DEPTH
    max_json_bytes: ClassVar[int] = MAX_JSON_BYTES

    @classmethod
    def loads(cls, data: bytes, /) -> Any:
        if is_pickle(data):
            return pickle.loads(data)  # noqa: S301 - accepted on purpose: JobGate(accept_pickle=True)
        return json.loads(check_json(data, max_depth=cls.max_json_depth, max_bytes=cls.max_json_bytes))
