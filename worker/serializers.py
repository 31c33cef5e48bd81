"""Serializers of the rq job envelope (the ``data`` and ``meta`` fields of ``rq:job:<id>``) without pickle.

rq stores a job's function name, arguments and meta with its default serializer, pickle, so whoever
can write a job hash to Redis can make a worker that loads it call any function (a ``__reduce__``
runs on ``pickle.loads``). A worker behind a `worker.gate.JobGate` loads jobs with one of these:

- `JSONSerializer` writes what rq's ``rq.serializers.JSONSerializer`` writes (UTF-8 JSON) and reads
  JSON only. Pickled bytes are refused with `PickleRefused`, which says so; ``pickle`` is never called.
- `JSONOrPickleSerializer` reads both (pickle is told apart by its first byte: protocol 2 and later
  start with ``0x80``, which no JSON text does) and writes JSON when the value is JSON-encodable, else
  pickle. For a gate that accepts pickle: pickled jobs enqueued by plain rq still run.

As with rq's JSONSerializer, JSON turns tuples into lists and non-string dict keys into strings; rq
unpacks the job's ``(func_name, instance, args, kwargs)`` from a list as well as from a tuple.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Final

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


def is_pickle(data: bytes | bytearray | memoryview | str) -> bool:
    """Whether `data` is pickled with protocol 2 or later (rq pickles with the highest protocol)."""
    return not isinstance(data, str) and bytes(data[:1]) == PICKLE_MARK


class JSONSerializer:
    """UTF-8 JSON, as rq's JSONSerializer writes it; pickled bytes raise `PickleRefused`, never unpickled."""

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        return json.dumps(obj).encode("utf-8")

    @staticmethod
    def loads(data: bytes, /) -> Any:
        if is_pickle(data):
            raise PickleRefused(data)
        return json.loads(data)


class JSONOrPickleSerializer:
    """Reads JSON and pickle (told apart by the first byte); writes JSON when it can, else pickle."""

    @staticmethod
    def dumps(obj: Any, /) -> bytes:
        try:
            return json.dumps(obj).encode("utf-8")
        except (TypeError, ValueError):  # not JSON-encodable (an instance, a set, a circular value)
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes, /) -> Any:
        if is_pickle(data):
            return pickle.loads(data)  # noqa: S301 - accepted on purpose: JobGate(accept_pickle=True)
        return json.loads(data)
