"""Every Redis key and channel this package adds beside RQ's own, under one prefix."""

from __future__ import annotations

PREFIX = "rq_signals"

#: Pub/sub channel: a retry was scheduled; the message is its due time (Redis clock, float seconds).
RETRY_SCHEDULED_CHANNEL = f"{PREFIX}:retry-scheduled"


def recovery_lock(queue_name: str) -> str:
    """Held briefly by the one worker scanning `queue_name`'s started registry for dead jobs."""
    return f"{PREFIX}:recovery-lock:{queue_name}"
