"""`JobSpec`, one receiver call ready to become an RQ job, and how logs name a group of them.

The value every sending module passes around: `rq_signals.enqueue` builds it at send time, the
writer (`rq_signals.jobwriter`), the background flusher and the outbox take it. It imports nothing
of theirs, so each of them can import it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import uuid4

from rq_signals import defaults


def payload_text(payload: dict[str, Any]) -> str:
    """The payload as compact ASCII JSON (non-ASCII escaped): its length is its size in bytes.

    Made once per send: the size check measures it and the job's ``data`` embeds it as it is.
    """
    return _PAYLOAD_ENCODER.encode(payload)


#: Built once: ``json.dumps`` with these options would build an encoder per call.
_PAYLOAD_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class JobSpec:
    """One receiver call, ready to become an RQ job; `timeout` in seconds.

    `payload_json` is the payload's `payload_text`, encoded once at send: the size check measured it,
    and the job's ``data`` embeds it as it is (`args_json`).
    """

    queue: str
    receiver_id: str
    signal_path: str
    payload_json: str
    description: str
    meta: dict[str, Any]
    timeout: int | None
    job_id: str = field(default_factory=lambda: str(uuid4()))  # chosen at send: the outbox keeps it

    @property
    def function(self) -> str:
        """The job's function: `rq_signals.jobs.run_receiver`."""
        return defaults.JOB_FUNCTION

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, decoded again from `payload_json` (the outbox, eager mode, other queue classes)."""
        return json.loads(self.payload_json)  # type: ignore[no-any-return]

    def job_args(self) -> tuple[str, str, dict[str, Any]]:
        """The arguments of `rq_signals.jobs.run_receiver`."""
        return (self.receiver_id, self.signal_path, self.payload)

    @property
    def args_json(self) -> str:
        """`job_args` as JSON text (as a JSON serializer writes them), without encoding the payload again."""
        return _args_prefix(self.receiver_id, self.signal_path) + self.payload_json + "]"


@functools.lru_cache(maxsize=1024)
def _args_prefix(receiver_id: str, signal_path: str) -> str:
    return json.dumps([receiver_id, signal_path])[:-1] + ", "


def list_receivers(specs: Iterable[JobSpec]) -> str:
    """The receiver ids of `specs`, sorted, once each, for a log line."""
    return ", ".join(sorted({spec.receiver_id for spec in specs}))


def list_ids(job_ids: Sequence[str], limit: int = 20) -> str:
    """The first `limit` job ids, and how many more, for a log line."""
    shown = ", ".join(job_ids[:limit])
    return shown if len(job_ids) <= limit else f"{shown} (and {len(job_ids) - limit} more)"
