"""Values as log lines and error messages show them: repr'd and cut to a length."""

from __future__ import annotations


def truncate(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "…" as the last one when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_repr(value: object, limit: int) -> str:
    """`repr(value)` (a space or a newline shows), cut to `limit` characters; a repr that raises
    is named instead of raising."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__}: repr raised {type(exc).__name__}>"
    return truncate(text, limit)
