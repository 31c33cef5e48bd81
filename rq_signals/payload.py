"""JSON codec for signal arguments: model instances by reference, delete snapshots, clear errors.

The receiver's keyword arguments are encoded inside the request (at send time) and decoded on the
worker. Never pickle: a payload is plain JSON (``json.dumps(payload, allow_nan=False)`` works).

Contract
--------
``encode_arguments(kwargs, signal_name=..., receiver_path=...)`` takes the keyword arguments Django
gives a receiver, ``sender`` included; a ``signal`` key is dropped (the job passes the registered
``Signal`` again). ``signal_name`` is the bare name for Django's model signals (``"post_save"``,
``"pre_delete"``, ...): it decides how instances travel. It returns::

    {"format": 1, "signal": "post_save", "receiver": "shop.receivers.send_receipt", "kwargs": {...}}

``decode_arguments(payload, missing=...)`` returns the keyword arguments (without ``signal``).

Values: ``None``, ``bool``, ``int``, ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys are
themselves. Everything else is a tagged object ``{"__rqs__": <tag>, "v": <value>}``, exactly those two
keys: ``decimal``, ``datetime``, ``zoned_datetime``, ``date``, ``time``, ``zoned_time``,
``timedelta``, ``uuid``, ``bytes``, ``float`` (inf and nan), ``tuple``, ``set``, ``frozenset``,
``dict`` (a list of ``[key, value]`` pairs: dicts with non-``str`` keys, or a user dict that holds
the reserved ``"__rqs__"`` key, so user data is never read as a tag), ``model_class`` (a label such
as ``"shop.Order"``) and ``model``. Subclasses travel as their base type (a ``TextChoices`` member as
its ``str``, a namedtuple as a tuple, ``bytearray``/``memoryview`` as ``bytes``). Aware datetimes
keep their UTC offset, or their zone when it is a ``zoneinfo.ZoneInfo``.

Model instances (``model``) carry their label, pk, database alias and a snapshot of the concrete
fields that are loaded (attname -> value, so foreign keys by id; deferred fields are left out, never
loaded). On the worker the instance is:

- fetched fresh from its database (``mode: "ref"``, the default) through the base manager, as
  ``refresh_from_db`` does, so the receiver sees what was committed, not the snapshot. If the row
  is gone, ``missing`` decides: ``"skip"`` raises `SkipReceiver` (the job logs it and succeeds),
  ``"snapshot"`` rebuilds it from the snapshot, ``"fail"`` raises `MissingInstance`;
- rebuilt from the snapshot for ``pre_delete``/``post_delete`` (``mode: "deleted"``): pk set,
  ``_state.adding`` False, ``_state.db`` the alias;
- rebuilt unsaved (``mode: "unsaved"``) for an instance with no pk, allowed in ``pre_save`` only.

Snapshot fields the model no longer has (a deploy between send and run) are ignored; fields it
gained are deferred. Anything else (a queryset, a request, a file, a connection, a function...)
raises `SerializationError` at send time naming the signal, receiver, argument path and type. An
undecodable payload raises `PayloadError`, which is permanent: the job is not retried.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist
from django.db import connections, models, router
from django.db.models import DEFERRED
from django.http import HttpRequest

from rq_signals.exceptions import MissingInstance, PayloadError, SerializationError, SkipReceiver

Missing = Literal["skip", "snapshot", "fail"]

FORMAT_VERSION: Final = 1
TAG: Final = "__rqs__"
DELETE_SIGNALS: Final = frozenset({"pre_delete", "post_delete"})
UNSAVED_ALLOWED_SIGNALS: Final = frozenset({"pre_save"})
_PLAIN: Final = frozenset({str, int, bool, type(None)})
_MODES: Final = frozenset({"ref", "deleted", "unsaved"})


def encode_arguments(
    signal_kwargs: Mapping[str, Any], *, signal_name: str, receiver_path: str
) -> dict[str, Any]:
    """The JSON payload of one receiver call; raises `SerializationError` naming the bad argument."""
    encoder = _Encoder(signal_name)
    encoded: dict[str, Any] = {}
    for name, value in signal_kwargs.items():
        if name != "signal":
            encoded[name] = encoder.encode_argument(value, name, receiver_path)
    return {"format": FORMAT_VERSION, "signal": signal_name, "receiver": receiver_path, "kwargs": encoded}


def decode_arguments(data: Mapping[str, Any], *, missing: Missing = "skip") -> dict[str, Any]:
    """The receiver's keyword arguments, instances fetched fresh; see the module docstring."""
    if not isinstance(data, Mapping):
        raise PayloadError(f"Payload: expected a JSON object, got {_short(data)}")
    where = f"Payload of {data.get('signal')} receiver {data.get('receiver')}"
    if data.get("format") != FORMAT_VERSION or not isinstance(data.get("kwargs"), dict):
        raise PayloadError(
            f"{where}: expected format {FORMAT_VERSION} with a 'kwargs' object, got {_short(data)}"
        )
    decoder = _Decoder(missing)
    return {
        name: decoder.decode_argument(value, f"{where}: argument {name!r}")
        for name, value in data["kwargs"].items()
    }


def encode_value(value: Any, *, signal_name: str, receiver_path: str, argument: str = "value") -> Any:
    """One value as JSON, under the same rules as `encode_arguments` (errors name ``argument``)."""
    return _Encoder(signal_name).encode_argument(value, argument, receiver_path)


def decode_value(data: Any, *, missing: Missing = "skip") -> Any:
    """The value `encode_value` encoded."""
    return _Decoder(missing).decode_argument(data, "Value")


@dataclass(frozen=True)
class _ModelInfo:
    label: str
    fields: tuple[tuple[str, models.Field[Any, Any]], ...]  # concrete fields, in __init__ order


@functools.cache
def _model_info(model: type[models.Model]) -> _ModelInfo:
    """Cached per class: the encoder runs inside save(), so no reflection per call."""
    opts = model._meta
    return _ModelInfo(opts.label, tuple((f.attname, f) for f in opts.concrete_fields))


def _tag(tag: str, value: Any) -> dict[str, Any]:
    return {TAG: tag, "v": value}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _zoned_or(tag: str, value: datetime | time) -> dict[str, Any]:
    if isinstance(value.tzinfo, ZoneInfo):
        return _tag("zoned_" + tag, [value.replace(tzinfo=None).isoformat(), value.tzinfo.key, value.fold])
    return _tag(tag, value.isoformat())


# Exact type -> encoder; subclasses are found by isinstance in this order (datetime before date).
_SCALARS: Final[dict[type, Callable[[Any], Any]]] = {
    Decimal: lambda v: _tag("decimal", str(v)),
    datetime: lambda v: _zoned_or("datetime", v),
    date: lambda v: _tag("date", v.isoformat()),
    time: lambda v: _zoned_or("time", v),
    timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    UUID: lambda v: _tag("uuid", str(v)),
    bytes: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    memoryview: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
}


class _Unencodable(Exception):
    """Internal: carries the bad value up the recursion; each container adds its path segment."""

    def __init__(self, value: Any, reason: str = "which cannot be sent to a job", hint: str = "") -> None:
        super().__init__(reason)
        self.value, self.current, self.reason, self.hint = value, value, reason, hint
        self.segments: list[str] = []  # innermost first

    def inside(self, segment: str, container: Any) -> _Unencodable:
        self.segments.append(segment)
        self.current = container
        return self


class _Encoder:
    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        self.deleting = signal_name in DELETE_SIGNALS
        self.allow_unsaved = signal_name in UNSAVED_ALLOWED_SIGNALS

    def encode_argument(self, value: Any, name: str, receiver_path: str) -> Any:
        try:
            return self.encode(value)
        except RecursionError:
            subject = f"{self.signal_name} receiver {receiver_path}"
            raise SerializationError(
                f"{subject} got argument '{name}' ({type(value).__qualname__}), which contains itself or is "
                "nested too deeply to be sent to a job; send a flatter value."
            ) from None
        except _Unencodable as exc:
            path = name + "".join(reversed(exc.segments))
            kind = type(exc.value).__qualname__
            hint = exc.hint or _hint_for(exc.value, name if self.deleting else "")
            subject = f"{self.signal_name} receiver {receiver_path}"
            raise SerializationError(
                f"{subject} got argument '{path}' ({kind}), {exc.reason}; {hint}."
            ) from None

    def encode(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is float:
            return value if math.isfinite(value) else _tag("float", repr(value))
        if kind is list:
            return self._items(value)
        if kind is dict:
            return self._dict(value)
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            return scalar(value)
        if kind is tuple:
            return _tag("tuple", self._items(value))
        if kind is set or kind is frozenset:
            return _tag(kind.__name__, self._items(value))
        return self._subclass(value)

    def _items(self, items: Any) -> list[Any]:
        try:
            return [self.encode(item) for item in items]
        except _Unencodable as exc:
            if isinstance(items, (set, frozenset)):
                raise exc.inside("{<item>}", items) from None
            index = next((i for i, item in enumerate(items) if item is exc.current), "?")
            raise exc.inside(f"[{index}]", items) from None

    def _dict(self, value: dict[Any, Any]) -> Any:
        try:
            if TAG not in value and all(type(key) is str for key in value):
                return {key: self.encode(item) for key, item in value.items()}
            return _tag("dict", [[self.encode(key), self.encode(item)] for key, item in value.items()])
        except _Unencodable as exc:
            found = next(((key,) for key, item in value.items() if item is exc.current), None)
            segment = f"[{found[0]!r}]" if found else "[<key>]"
            raise exc.inside(segment, value) from None

    def _subclass(self, value: Any) -> Any:
        if isinstance(value, models.Model):
            return self._instance(value)
        if isinstance(value, type) and issubclass(value, models.Model) and not value._meta.abstract:
            return _tag("model_class", _model_info(value).label)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, float):
            return self.encode(float(value))
        for base, scalar in _SCALARS.items():
            if isinstance(value, base):
                return scalar(value)
        for base in (list, tuple, set, frozenset):
            if isinstance(value, base):
                try:
                    return self.encode(base(value))
                except _Unencodable as exc:
                    raise exc.inside("", value) from None  # the container's path is the original's
        if isinstance(value, dict):
            return self._dict(value)
        raise _Unencodable(value)

    def _instance(self, obj: models.Model) -> dict[str, Any]:
        info = _model_info(type(obj))
        if obj.pk is None:
            if not self.allow_unsaved:
                raise _Unencodable(
                    obj,
                    "an unsaved instance (its pk is None), which cannot be sent to a job",
                    "save it first, or send its field values",
                )
            mode = "unsaved"
        else:
            mode = "deleted" if self.deleting else "ref"
        loaded = obj.__dict__  # deferred fields are absent: left out, never loaded by a query here
        fields = {}
        for attname, field in info.fields:
            if attname in loaded:
                fields[attname] = self._field(field, loaded[attname], obj)
        state = {"label": info.label, "pk": self.encode(obj.pk), "db": obj._state.db, "mode": mode}
        return _tag("model", {**state, "fields": fields})

    def _field(self, field: models.Field[Any, Any], value: Any, obj: models.Model) -> Any:
        try:
            return self.encode(value)
        except _Unencodable as exc:
            try:  # e.g. a FieldFile: its database value (the file's name) is enough for a snapshot
                return self.encode(field.get_prep_value(value))
            except Exception:
                raise exc.inside(f".{field.attname}", obj) from None


def _hint_for(value: Any, delete_argument: str) -> str:
    if isinstance(value, models.QuerySet) and delete_argument == "origin":
        return "Django sends the QuerySet as origin when queryset.delete() runs; exclude 'origin'"
    if isinstance(value, models.QuerySet):
        return "send a list of instances or pks instead (list(queryset))"
    if isinstance(value, HttpRequest):
        return "send the values you need from it (e.g. request.user.pk) instead"
    return "pass a model instance or a JSON value, or exclude it"


class _Undecodable(Exception):
    """Internal: what is wrong, reported as a `PayloadError` naming the argument."""


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise _Undecodable(f"{what} expected, got {_short(value)}")
    return value


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Undecodable) else f"{type(exc).__name__}: {exc}"


def _model(label: Any) -> type[models.Model]:
    try:
        return apps.get_model(_expect(label, str, "a model label"))
    except (LookupError, ValueError) as exc:
        raise _Undecodable(f"names model {label!r}, which is not installed ({exc})") from None


def _timedelta(v: Any) -> timedelta:
    days, seconds, micro = (_expect(x, int, "an int") for x in _expect(v, list, "[days, seconds, us]"))
    return timedelta(days=days, seconds=seconds, microseconds=micro)


def _iso(parse: Callable[[str], datetime | time], v: Any) -> datetime | time:
    """`fromisoformat`, keeping a sub-second UTC offset (Python 3.11 drops one whose seconds are 0)."""
    value = parse(_expect(v, str, "an ISO string"))
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
    wall, key, fold = _expect(v, list, "[wall time, zone, fold]")
    parsed = parse(_expect(wall, str, "an ISO string"))
    return parsed.replace(tzinfo=ZoneInfo(_expect(key, str, "a zone name")), fold=_expect(fold, int, "fold"))


_NON_FINITE: Final = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

_SCALAR_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {
    "decimal": lambda v: Decimal(_expect(v, str, "a decimal string")),
    "datetime": lambda v: _iso(datetime.fromisoformat, v),
    "zoned_datetime": lambda v: _zoned(datetime.fromisoformat, v),
    "date": lambda v: date.fromisoformat(_expect(v, str, "an ISO date")),
    "time": lambda v: _iso(time.fromisoformat, v),
    "zoned_time": lambda v: _zoned(time.fromisoformat, v),
    "timedelta": _timedelta,
    "uuid": lambda v: UUID(_expect(v, str, "a UUID string")),
    "bytes": lambda v: base64.b64decode(_expect(v, str, "a base64 string"), validate=True),
    "float": lambda v: _NON_FINITE[_expect(v, str, "'inf', '-inf' or 'nan'")],
    "model_class": _model,
}
_CONTAINERS: Final[dict[str, Callable[[list[Any]], Any]]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}


class _Decoder:
    def __init__(self, missing: Missing) -> None:
        if missing not in ("skip", "snapshot", "fail"):
            raise ValueError(f"missing must be 'skip', 'snapshot' or 'fail', not {missing!r}")
        self.missing = missing

    def decode_argument(self, data: Any, where: str) -> Any:
        try:
            return self.decode(data)
        except _Undecodable as exc:
            raise PayloadError(f"{where}: {exc}") from None

    def decode(self, data: Any) -> Any:
        kind = type(data)
        if kind in _PLAIN or kind is float:
            return data
        if kind is list:
            return [self.decode(item) for item in data]
        if kind is not dict:
            raise _Undecodable(f"a JSON value expected, got {kind.__qualname__} {_short(data)}")
        if TAG not in data:
            return {key: self.decode(item) for key, item in data.items()}
        if len(data) != 2 or "v" not in data:
            raise _Undecodable(f"a tagged value has exactly the keys {TAG!r} and 'v', got {_short(data)}")
        tag, value = data[TAG], data["v"]
        if tag in _SCALAR_DECODERS:
            try:
                return _SCALAR_DECODERS[tag](value)
            except (_Undecodable, ArithmeticError, ValueError, TypeError, KeyError) as exc:
                raise _Undecodable(f"bad {tag!r} value {_short(value)}: {_reason(exc)}") from None
        if tag == "model":
            return self._instance(_expect(value, dict, "an instance object"))
        if tag in _CONTAINERS:
            items: list[Any] = [self.decode(item) for item in _expect(value, list, f"a list for {tag!r}")]
        elif tag == "dict":
            pairs = [
                _expect(pair, list, "a [key, value] pair") for pair in _expect(value, list, "a list of pairs")
            ]
            if any(len(pair) != 2 for pair in pairs):
                raise _Undecodable(f"a [key, value] pair expected, got {_short(value)}")
            items = [(self.decode(key), self.decode(item)) for key, item in pairs]
        else:
            raise _Undecodable(f"unknown tag {_short(tag)} in {_short(data)}")
        try:
            return dict(items) if tag == "dict" else _CONTAINERS[tag](items)
        except TypeError as exc:  # an unhashable set item or dict key
            raise _Undecodable(f"bad {tag!r} value {_short(value)}: {_reason(exc)}") from None

    def _instance(self, data: dict[str, Any]) -> models.Model:
        model = _model(data.get("label"))
        mode = data.get("mode")
        if mode not in _MODES:
            raise _Undecodable(f"instance mode must be one of {sorted(_MODES)}, got {_short(mode)}")
        alias = data.get("db") or router.db_for_read(model)
        if _expect(alias, str, "a database alias") not in connections:
            raise _Undecodable(f"database alias {alias!r} of {model._meta.label} is not in DATABASES")
        pk = self.decode(data.get("pk"))
        snapshot = {name: self.decode(v) for name, v in _expect(data.get("fields"), dict, "fields").items()}
        if mode == "ref":
            try:
                # The base manager, as refresh_from_db: a filtering default manager must not hide the row.
                return model._base_manager.db_manager(alias).get(pk=pk)
            except ObjectDoesNotExist:
                gone = MissingInstance(model._meta.label, pk, alias)
                if self.missing == "skip":
                    raise SkipReceiver(str(gone)) from gone
                if self.missing == "fail":
                    raise gone from None
        return _rebuild(model, snapshot, None if mode == "unsaved" else alias)


def _rebuild(model: type[models.Model], snapshot: dict[str, Any], alias: str | None) -> models.Model:
    """An instance as `Model.from_db` builds it; unknown fields ignored, missing ones deferred."""
    instance = model(*[snapshot.get(attname, DEFERRED) for attname, _ in _model_info(model).fields])
    instance._state.adding = alias is None
    instance._state.db = alias
    return instance
