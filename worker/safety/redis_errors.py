"""Which Redis errors mean "Redis is unavailable for now": the one place that says so.

A worker pauses and retries on these (`worker.safety.reconnect`), and the sender stores the jobs of a
write that met one in the outbox (it does so for any `RedisError`): none of them may end a process.

- no connection, a timeout, a server still loading its data (``LOADING``);
- a master that refuses writes until enough replicas are connected (``NOREPLICAS``, from
  ``min-replicas-to-write``) or that cannot reach its own master (``MASTERDOWN``, a replica with
  ``replica-serve-stale-data no``);
- ``TRYAGAIN`` and ``READONLY``: a node in the middle of a change of role (a failover demotes the
  old master to a replica, which refuses writes on the connections it still holds).

redis-py turns some of these into their own classes (``BusyLoadingError`` is a ``ConnectionError``,
``ReadOnlyError``, ``TryAgainError``, ``MasterDownError`` are ``ResponseError``s); ``NOREPLICAS`` is a
plain ``ResponseError``, and an error inside a transaction comes back with its message prefixed by the
command that caused it, so the codes are matched on the message.
"""

from __future__ import annotations

import socket
from typing import Final

from redis.exceptions import (
    ConnectionError,
    MasterDownError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

#: Errors of the connection itself: always "unavailable".
CONNECTION_ERRORS: Final[tuple[type[BaseException], ...]] = (ConnectionError, TimeoutError, socket.timeout)
#: What to catch (then ask `is_unavailable`) to find every "unavailable" error, server replies included.
MAYBE_UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (*CONNECTION_ERRORS, ResponseError)
#: Server error codes that say "not now": the command may succeed once the server's state changes.
TRANSIENT_CODES: Final = frozenset({"NOREPLICAS", "MASTERDOWN", "TRYAGAIN", "LOADING", "READONLY"})
#: The classes redis-py gives some of them (it strips the code from their message).
_TRANSIENT_CLASSES: Final[tuple[type[ResponseError], ...]] = (ReadOnlyError, TryAgainError, MasterDownError)

#: How redis-py prefixes the error of a command inside a pipeline's transaction.
_PIPELINE_PREFIX: Final = "caused error: "


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means Redis cannot take commands for now (pause and retry), not a bad command."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, _TRANSIENT_CLASSES):
        return True
    return isinstance(exc, ResponseError) and error_code(exc) in TRANSIENT_CODES


def error_code(exc: ResponseError) -> str:
    """The error code a server reply starts with (``NOREPLICAS``, ``ERR``...); "" when there is none."""
    message = str(exc.args[0]) if exc.args else ""
    _, found, rest = message.partition(_PIPELINE_PREFIX)
    if found:
        message = rest
    code, _, _ = message.partition(" ")
    return code if code.isupper() else ""
