"""A Redis client described as plain data, to compare clients built in two processes."""

from __future__ import annotations

from typing import Any


def described(client: Any) -> dict[str, object]:
    """A client's class, its pool's and connections' classes and every plain connection setting."""
    pool = client.connection_pool
    plain = {
        key: value
        for key, value in pool.connection_kwargs.items()
        if isinstance(value, str | int | float | bool | type(None))
    }
    return {
        "client": type(client).__name__,
        "pool": type(pool).__name__,
        "connection": pool.connection_class.__name__,
        "settings": plain,
    }
