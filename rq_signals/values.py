"""Tagged plain values: how a payload writes the Python values JSON has no type for, and reads them back.

``None``, ``bool``, ``int``, ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys are
themselves. Everything else is a tagged object ``{"__rqs__": <tag>, "v": <value>}``, exactly those two
keys: ``decimal``, ``datetime``, ``zoned_datetime``, ``date``, ``time``, ``zoned_time``,
``timedelta``, ``uuid``, ``bytes``, ``float`` (inf and nan), ``tuple``, ``set``, ``frozenset``,
``dict`` (a list of ``[key, value]`` pairs: dicts with non-``str`` keys, or a user dict that holds
the reserved ``"__rqs__"`` key, so user data is never read as a tag), ``model_class`` (a label such
as ``"shop.Order"``) and ``model`` (see `rq_signals.instances`). Subclasses travel as their base type
(a ``TextChoices`` member as its ``str``, a namedtuple as a tuple, ``bytearray``/``memoryview`` as
``bytes``). Aware datetimes keep their UTC offset, or their zone when it is a ``zoneinfo.ZoneInfo``.

This module holds the leaves: the tag, one encoder and one decoder per scalar type, the container
constructors, and the internal errors the codec's walk (`rq_signals.payload`) turns into
`SerializationError` and `PayloadError`. It knows nothing of Django.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

TAG: Final = "__rqs__"
PLAIN_TYPES: Final = frozenset({str, int, bool, type(None)})


def tagged(tag: str, value: Any) -> dict[str, Any]:
    return {TAG: tag, "v": value}


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _zoned_or(tag: str, value: datetime | time) -> dict[str, Any]:
    if isinstance(value.tzinfo, ZoneInfo):
        return tagged("zoned_" + tag, [value.replace(tzinfo=None).isoformat(), value.tzinfo.key, value.fold])
    return tagged(tag, value.isoformat())


# Exact type -> encoder; subclasses are found by isinstance in this order (datetime before date).
SCALAR_ENCODERS: Final[dict[type, Callable[[Any], Any]]] = {
    Decimal: lambda v: tagged("decimal", str(v)),
    datetime: lambda v: _zoned_or("datetime", v),
    date: lambda v: tagged("date", v.isoformat()),
    time: lambda v: _zoned_or("time", v),
    timedelta: lambda v: tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    UUID: lambda v: tagged("uuid", str(v)),
    bytes: lambda v: tagged("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v: tagged("bytes", base64.b64encode(v).decode("ascii")),
    memoryview: lambda v: tagged("bytes", base64.b64encode(v).decode("ascii")),
}


class Unencodable(Exception):
    """Internal: carries the bad value up the recursion; each container adds its path segment."""

    def __init__(self, value: Any, reason: str = "which cannot be sent to a job", hint: str = "") -> None:
        super().__init__(reason)
        self.value, self.current, self.reason, self.hint = value, value, reason, hint
        self.segments: list[str] = []  # innermost first

    def inside(self, segment: str, container: Any) -> Unencodable:
        self.segments.append(segment)
        self.current = container
        return self


class Undecodable(Exception):
    """Internal: what is wrong, reported as a `PayloadError` naming the argument."""


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise Undecodable(f"{what} expected, got {short_repr(value)}")
    return value


def error_reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, Undecodable) else f"{type(exc).__name__}: {exc}"


def _timedelta(v: Any) -> timedelta:
    days, seconds, micro = (expect(x, int, "an int") for x in expect(v, list, "[days, seconds, us]"))
    return timedelta(days=days, seconds=seconds, microseconds=micro)


def _iso(parse: Callable[[str], datetime | time], v: Any) -> datetime | time:
    """`fromisoformat`, keeping a sub-second UTC offset (Python 3.11 drops one whose seconds are 0)."""
    value = parse(expect(v, str, "an ISO string"))
    sign_at = max(v.rfind("+"), v.rfind("-"))
    if value.tzinfo is None or "." not in v[sign_at:]:
        return value
    hours, minutes, seconds = v[sign_at + 1 :].split(":")
    whole, fraction = seconds.split(".")
    offset = timedelta(
        hours=int(hours), minutes=int(minutes), seconds=int(whole), microseconds=int(fraction.ljust(6, "0"))
    )
    return value.replace(tzinfo=timezone(-offset if v[sign_at] == "-" else offset))


def _zoned(parse: Callable[[str], datetime | time], v: Any) -> datetime | time:
    wall, key, fold = expect(v, list, "[wall time, zone, fold]")
    parsed = parse(expect(wall, str, "an ISO string"))
    return parsed.replace(tzinfo=ZoneInfo(expect(key, str, "a zone name")), fold=expect(fold, int, "fold"))


_NON_FINITE: Final = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

# Tag -> decoder for the scalar tags; `rq_signals.payload` adds ``model_class``.
SCALAR_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {
    "decimal": lambda v: Decimal(expect(v, str, "a decimal string")),
    "datetime": lambda v: _iso(datetime.fromisoformat, v),
    "zoned_datetime": lambda v: _zoned(datetime.fromisoformat, v),
    "date": lambda v: date.fromisoformat(expect(v, str, "an ISO date")),
    "time": lambda v: _iso(time.fromisoformat, v),
    "zoned_time": lambda v: _zoned(time.fromisoformat, v),
    "timedelta": _timedelta,
    "uuid": lambda v: UUID(expect(v, str, "a UUID string")),
    "bytes": lambda v: base64.b64decode(expect(v, str, "a base64 string"), validate=True),
    "float": lambda v: _NON_FINITE[expect(v, str, "'inf', '-inf' or 'nan'")],
}
CONTAINERS: Final[dict[str, Callable[[list[Any]], Any]]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}
