"""Run slow Django signal receivers on an RQ worker, after commit, with retries."""

from __future__ import annotations

from rq_signals.decorator import async_receiver
from rq_signals.exceptions import (
    MissingInstance,
    PayloadError,
    ReceiverDeclarationError,
    RqSignalsError,
    SerializationError,
    UnknownReceiver,
    UnknownReceiverInGrace,
)
from rq_signals.flusher import flush_jobs
from rq_signals.registration import AsyncReceiver
from worker.retries.backoff import Backoff

__all__ = [
    "AsyncReceiver",
    "Backoff",
    "MissingInstance",
    "PayloadError",
    "ReceiverDeclarationError",
    "RqSignalsError",
    "SerializationError",
    "UnknownReceiver",
    "UnknownReceiverInGrace",
    "async_receiver",
    "flush_jobs",
]
