"""JSON codec for signal arguments: the entry point, and the walk over a call's arguments.

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

How plain values are tagged is in `rq_signals.values`; how model instances travel (by reference
with a snapshot, refetched on the worker, the ``missing`` policy) is in `rq_signals.instances`.
This module walks lists, dicts, tuples and sets down to those leaves and reports what it cannot
encode: anything else (a queryset, a request, a file, a connection, a function...) raises
`SerializationError` at send time naming the signal, receiver, argument path and type. An
undecodable payload raises `PayloadError`, which is permanent: the job is not retried. A forged
payload is refused the same way when it nests deeper than `MAX_DEPTH` (never a ``RecursionError``)
or when a set or tagged dict holds more than `MAX_SAME_HASH` items of one hash, which would take
quadratic time to build.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from django.db import models
from django.http import HttpRequest

from rq_signals.exceptions import PayloadError, SerializationError
from rq_signals.instances import (
    DELETE_SIGNALS,
    UNSAVED_ALLOWED_SIGNALS,
    InstanceDecoding,
    InstanceEncoding,
    Missing,
    installed_model,
    model_info,
)
from rq_signals.values import (
    CONTAINERS,
    PLAIN_TYPES,
    SCALAR_DECODERS,
    SCALAR_ENCODERS,
    TAG,
    Undecodable,
    Unencodable,
    error_reason,
    expect,
    short_repr,
    tagged,
)

__all__ = ["Missing", "decode_arguments", "decode_value", "encode_arguments", "encode_value"]

FORMAT_VERSION: Final = 1
#: Deepest nesting of lists, dicts and tagged values a payload may have (JSON levels).
MAX_DEPTH: Final = 100
#: Most items of a set (or keys of a tagged dict) that may share one hash; distinct values of a real
#: set almost never do, and building a set of n colliding items takes n * n / 2 comparisons.
MAX_SAME_HASH: Final = 64


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
        raise PayloadError(f"Payload: expected a JSON object, got {short_repr(data)}")
    where = f"Payload of {data.get('signal')} receiver {data.get('receiver')}"
    if data.get("format") != FORMAT_VERSION or not isinstance(data.get("kwargs"), dict):
        raise PayloadError(
            f"{where}: expected format {FORMAT_VERSION} with a 'kwargs' object, got {short_repr(data)}"
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


class _Encoder(InstanceEncoding):
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
        except Unencodable as exc:
            path = name + "".join(reversed(exc.segments))
            kind = type(exc.value).__qualname__
            hint = exc.hint or _hint_for(exc.value, name if self.deleting else "")
            subject = f"{self.signal_name} receiver {receiver_path}"
            raise SerializationError(
                f"{subject} got argument '{path}' ({kind}), {exc.reason}; {hint}."
            ) from None

    def encode(self, value: Any) -> Any:
        kind = type(value)
        if kind in PLAIN_TYPES:
            return value
        if kind is float:
            return value if math.isfinite(value) else tagged("float", repr(value))
        if kind is list:
            return self._items(value)
        if kind is dict:
            return self._dict(value)
        scalar = SCALAR_ENCODERS.get(kind)
        if scalar is not None:
            return scalar(value)
        if kind is tuple:
            return tagged("tuple", self._items(value))
        if kind is set or kind is frozenset:
            return tagged(kind.__name__, self._items(value))
        return self._subclass(value)

    def _items(self, items: Any) -> list[Any]:
        try:
            return [self.encode(item) for item in items]
        except Unencodable as exc:
            if isinstance(items, (set, frozenset)):
                raise exc.inside("{<item>}", items) from None
            index = next((i for i, item in enumerate(items) if item is exc.current), "?")
            raise exc.inside(f"[{index}]", items) from None

    def _dict(self, value: dict[Any, Any]) -> Any:
        try:
            if TAG not in value and all(type(key) is str for key in value):
                return {key: self.encode(item) for key, item in value.items()}
            return tagged("dict", [[self.encode(key), self.encode(item)] for key, item in value.items()])
        except Unencodable as exc:
            found = next(((key,) for key, item in value.items() if item is exc.current), None)
            segment = f"[{found[0]!r}]" if found else "[<key>]"
            raise exc.inside(segment, value) from None

    def _subclass(self, value: Any) -> Any:
        if isinstance(value, models.Model):
            return self._instance(value)
        if isinstance(value, type) and issubclass(value, models.Model) and not value._meta.abstract:
            return tagged("model_class", model_info(value).label)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, float):
            return self.encode(float(value))
        for base, scalar in SCALAR_ENCODERS.items():
            if isinstance(value, base):
                return scalar(value)
        for base in (list, tuple, set, frozenset):
            if isinstance(value, base):
                try:
                    return self.encode(base(value))
                except Unencodable as exc:
                    raise exc.inside("", value) from None  # the container's path is the original's
        if isinstance(value, dict):
            return self._dict(value)
        raise Unencodable(value)


def _hint_for(value: Any, delete_argument: str) -> str:
    if isinstance(value, models.QuerySet) and delete_argument == "origin":
        return "Django sends the QuerySet as origin when queryset.delete() runs; exclude 'origin'"
    if isinstance(value, models.QuerySet):
        return "send a list of instances or pks instead (list(queryset))"
    if isinstance(value, HttpRequest):
        return "send the values you need from it (e.g. request.user.pk) instead"
    return "pass a model instance or a JSON value, or exclude it"


_SCALAR_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {**SCALAR_DECODERS, "model_class": installed_model}


class _Decoder(InstanceDecoding):
    def __init__(self, missing: Missing) -> None:
        if missing not in ("skip", "snapshot", "fail"):
            raise ValueError(f"missing must be 'skip', 'snapshot' or 'fail', not {missing!r}")
        self.missing = missing

    def decode_argument(self, data: Any, where: str) -> Any:
        try:
            return self.decode(data)
        except Undecodable as exc:
            raise PayloadError(f"{where}: {exc}") from None
        except RecursionError:
            raise PayloadError(f"{where}: nested too deeply to decode") from None

    def decode(self, data: Any, depth: int = 0) -> Any:
        kind = type(data)
        if kind in PLAIN_TYPES or kind is float:
            return data
        if depth >= MAX_DEPTH:
            raise Undecodable(f"nested deeper than {MAX_DEPTH} lists, dicts and tagged values")
        depth += 1
        if kind is list:
            return [self.decode(item, depth) for item in data]
        if kind is not dict:
            raise Undecodable(f"a JSON value expected, got {kind.__qualname__} {short_repr(data)}")
        if TAG not in data:
            return {key: self.decode(item, depth) for key, item in data.items()}
        if len(data) != 2 or "v" not in data:
            raise Undecodable(f"a tagged value has exactly the keys {TAG!r} and 'v', got {short_repr(data)}")
        tag, value = data[TAG], data["v"]
        if tag in _SCALAR_DECODERS:
            try:
                return _SCALAR_DECODERS[tag](value)
            except (Undecodable, ArithmeticError, ValueError, TypeError, KeyError) as exc:
                raise Undecodable(f"bad {tag!r} value {short_repr(value)}: {error_reason(exc)}") from None
        if tag == "model":
            return self._instance(expect(value, dict, "an instance object"))
        if tag in CONTAINERS:
            listed = expect(value, list, f"a list for {tag!r}")
            items: list[Any] = [self.decode(item, depth) for item in listed]
        elif tag == "dict":
            pairs = [
                expect(pair, list, "a [key, value] pair") for pair in expect(value, list, "a list of pairs")
            ]
            if any(len(pair) != 2 for pair in pairs):
                raise Undecodable(f"a [key, value] pair expected, got {short_repr(value)}")
            items = [(self.decode(key, depth), self.decode(item, depth)) for key, item in pairs]
        else:
            raise Undecodable(f"unknown tag {short_repr(tag)} in {short_repr(data)}")
        try:
            if tag in ("dict", "set", "frozenset"):
                _check_hashes([item[0] for item in items] if tag == "dict" else items, tag, value)
            return dict(items) if tag == "dict" else CONTAINERS[tag](items)
        except TypeError as exc:  # an unhashable set item or dict key
            raise Undecodable(f"bad {tag!r} value {short_repr(value)}: {error_reason(exc)}") from None


def _check_hashes(keys: list[Any], tag: str, value: Any) -> None:
    """Refuse `keys` of a set or dict if more than `MAX_SAME_HASH` share a hash (quadratic to build)."""
    if len(keys) <= MAX_SAME_HASH:
        return
    shared, count = Counter(map(hash, keys)).most_common(1)[0]
    if count > MAX_SAME_HASH:
        raise Undecodable(
            f"bad {tag!r} value {short_repr(value)}: {count} of its {len(keys)} items share the hash "
            f"{shared} (at most {MAX_SAME_HASH} may), which would take quadratic time to build"
        )
