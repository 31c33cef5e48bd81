"""Every Redis key and channel this package adds beside RQ's own, under one prefix."""

from __future__ import annotations

PREFIX = "rq_signals"

#: Pub/sub channel for promoters: "<due> <queue>" when a retry is scheduled, "promoted <queue> <next
#: due or nothing>" after retries were moved onto the queue, "release <queue>" when a stopping
#: promoter gives up its lease. Due times are on the Redis clock, float seconds since the epoch.
RETRY_SCHEDULED_CHANNEL = f"{PREFIX}:retry-scheduled"


def recovery_lock(queue_name: str) -> str:
    """Held briefly by the one worker scanning `queue_name`'s started registry for dead jobs."""
    return f"{PREFIX}:recovery-lock:{queue_name}"


def retries(queue_name: str) -> str:
    """Sorted set: our pending retries in `queue_name`, scored by due time (Redis clock, float seconds).

    Mirrors our entries of rq's `rq:scheduled:<queue_name>`, same scores: rq's registry is what
    dashboards show, this index tells our promoters (and our rq scheduler) which entries are ours. An
    entry whose job was deleted or enqueued by hand lingers until it is due, then is dropped.
    """
    return f"{PREFIX}:retries:{queue_name}"


def promoter_wake(worker_name: str) -> str:
    """Pub/sub channel that wakes one worker's promoter thread (to stop it)."""
    return f"{PREFIX}:promoter-wake:{worker_name}"


def promoter_lease(queue_name: str) -> str:
    """String with a TTL: the name of the one promoter that promotes `queue_name`'s retries."""
    return f"{PREFIX}:promoter-lease:{queue_name}"


def metrics(queue_name: str) -> str:
    """Hash: `worker.metrics`' counters of the jobs of `queue_name` (fields ``<label>\\x1f<name>``)."""
    return f"{PREFIX}:metrics:{queue_name}"
