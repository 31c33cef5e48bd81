"""A receiver call's payload for people: its instance (label, pk, snapshot fields), other arguments as text.

Read from the payload only: an instance is never fetched from the database and no model is
imported beyond those installed; a value that holds an instance, or cannot be decoded, is shown
as its JSON. Every text is clipped to `VALUE_CHARS`; the templates escape it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rq_signals.exceptions import PayloadError
from rq_signals.payload import decode_value
from rq_signals.values import TAG

#: Longest text of one value (an argument, a snapshot field, an error message) on a page, in characters.
VALUE_CHARS = 300


@dataclass(frozen=True)
class InstanceRef:
    """A model instance as the payload carries it: label, pk and its snapshot fields (as text)."""

    label: str
    pk: Any
    mode: str
    fields: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return f"{self.label} pk={self.pk}"


@dataclass(frozen=True)
class Argument:
    name: str
    text: str
    instance: InstanceRef | None = None


def sender_label(value: Any) -> str:
    if isinstance(value, dict) and value.get(TAG) == "model_class":
        return str(value.get("v"))
    return _text(value)


def read_argument(name: str, value: Any) -> Argument:
    if isinstance(value, dict) and value.get(TAG) == "model" and isinstance(value.get("v"), dict):
        return Argument(name, "", _instance(value["v"]))
    return Argument(name, _text(value))


def _instance(data: dict[str, Any]) -> InstanceRef | None:
    fields = data.get("fields")
    return InstanceRef(
        label=str(data.get("label")),
        pk=_value(data.get("pk")),
        mode=str(data.get("mode")),
        fields=tuple((str(k), _text(v)) for k, v in fields.items()) if isinstance(fields, dict) else (),
    )


def _value(data: Any) -> Any:
    """`data` decoded if it holds no instance (decoding an instance would query the database)."""
    try:
        return json.dumps(data) if _has_instance(data) else decode_value(data)
    except (PayloadError, ValueError, TypeError):
        return _json(data)


def _json(data: Any) -> str:
    try:
        return json.dumps(data)
    except (ValueError, TypeError, RecursionError):
        return "<unreadable value>"


def _text(data: Any) -> str:
    value = _value(data)
    return clip(value if isinstance(value, str) and _has_instance(data) else repr(value))


def _has_instance(data: Any, depth: int = 0) -> bool:
    if depth > 20:
        return True  # deep enough: shown as JSON, not decoded
    if isinstance(data, dict):
        return data.get(TAG) == "model" or any(_has_instance(v, depth + 1) for v in data.values())
    if isinstance(data, list):
        return any(_has_instance(v, depth + 1) for v in data)
    return False


def clip(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
