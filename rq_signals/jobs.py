"""The job entrypoint a worker imports: `run_receiver(receiver_id, signal_path, payload)`.

It runs only receivers registered in this process (`registration.lookup`), rebuilds the arguments
Django would have passed (instances fetched fresh), and closes stale database connections before
and after, as Django does around a request.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Literal

from asgiref.sync import async_to_sync
from django.db import close_old_connections
from rq import get_current_job
from rq.job import Job

from rq_signals import lifecycle
from rq_signals.conf import conf
from rq_signals.exceptions import SkipReceiver, UnknownReceiver, UnknownReceiverInGrace
from rq_signals.flusher import flush_jobs
from rq_signals.payload import decode_arguments
from rq_signals.registration import lookup

logger = logging.getLogger(__name__)

Outcome = Literal["called", "skipped"]


def run_receiver(receiver_id: str, signal_path: str, payload: dict[str, Any]) -> Outcome:
    """Run one receiver call on a worker; the job's result is ``"called"`` or ``"skipped"``."""
    close_old_connections()
    try:
        return call_receiver(receiver_id, signal_path, payload)
    except UnknownReceiver as exc:
        pending = in_grace(exc, get_current_job())
        if pending is None:
            raise
        raise pending from exc
    finally:
        # FLUSH="background": what the receiver committed is in Redis before its job ends (a forked
        # work horse leaves with os._exit(), which skips the atexit flush).
        flush_jobs()
        close_old_connections()


def call_receiver(receiver_id: str, signal_path: str, payload: dict[str, Any]) -> Outcome:
    """Decode and call, without touching connections (eager mode runs this inside the sender's request).

    Raises `UnknownReceiver` for a receiver or signal this process did not register and
    `PayloadError` for an undecodable payload (both permanent: no retry can mend them).
    """
    registration = lookup(receiver_id)
    ref = registration.signal_ref(signal_path)
    job = get_current_job()
    try:
        kwargs = decode_arguments(payload, missing=conf.missing_instance)
    except SkipReceiver as exc:
        where = f" (job {job.id})" if job is not None else ""
        logger.warning("Receiver %s: skipped%s, %s", receiver_id, where, exc)
        lifecycle.send(
            lifecycle.receiver_skipped, registration.func, receiver_id, job, payload=payload, reason=str(exc)
        )
        return "skipped"
    kwargs["signal"] = ref.signal
    try:
        if registration.is_coroutine:
            async_to_sync(registration.func)(**kwargs)
        else:
            registration.func(**kwargs)
    except Exception as exc:
        retrying = lifecycle.will_retry(job, exc)
        lifecycle.send(
            lifecycle.receiver_failed,
            registration.func,
            receiver_id,
            job,
            payload=payload,
            exception=exc,
            will_retry=retrying,
        )
        raise
    lifecycle.send(lifecycle.receiver_succeeded, registration.func, receiver_id, job, payload=payload)
    return "called"


def in_grace(exc: UnknownReceiver, job: Job | None) -> UnknownReceiverInGrace | None:
    """`exc` as a retryable error while the job is younger than ``UNKNOWN_RECEIVER_GRACE``; else None.

    The job's age is read against its ``created_at`` (the sender's clock), so clocks apart by more
    than the grace shorten or lengthen it by that much.
    """
    grace = conf.unknown_receiver_grace
    created = job.created_at if job is not None else None
    if job is None or created is None or grace <= 0:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    age = (datetime.now(timezone.utc) - created).total_seconds()
    if age >= grace:
        return None
    return UnknownReceiverInGrace(
        f"Job {job.id}: {exc} The job was created {age:.1f}s ago: retried under its policy until "
        f'RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"] ({grace:g}s) has passed, as a worker running older code '
        "than the sender's does during a rolling deploy; then it fails as UnknownReceiver."
    )
