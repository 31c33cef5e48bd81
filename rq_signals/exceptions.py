"""Errors raised by rq_signals; one base, `RqSignalsError`."""

from __future__ import annotations

from worker.exceptions import PermanentJobError


class RqSignalsError(Exception):
    """Base of every error the rq_signals app raises."""


class SerializationError(RqSignalsError, TypeError):
    """A signal argument cannot be sent to a job; raised at send time, inside the request.

    The message names the signal, the receiver, the argument (with its path inside nested
    values) and its type, and says what to pass instead.
    """


class PayloadError(RqSignalsError, PermanentJobError):
    """A job's payload cannot be decoded (bad structure, unknown tag, unknown model label).

    Also a `worker.PermanentJobError`: retrying cannot mend a payload, so the job fails at once.
    """


class MissingInstance(RqSignalsError, LookupError):
    """A model instance a job refers to no longer exists (raised under the ``"fail"`` policy)."""

    def __init__(self, model_label: str, pk: object, alias: str) -> None:
        super().__init__(f"{model_label} with pk={pk!r} no longer exists in database {alias!r}")
        self.model_label = model_label
        self.pk = pk
        self.alias = alias


class SkipReceiver(RqSignalsError):
    """The job must not call its receiver; the job entrypoint logs a warning and the job succeeds.

    Raised under the ``"skip"`` policy when an instance is gone; ``__cause__`` is the
    `MissingInstance` that says which.
    """


class ReceiverDeclarationError(RqSignalsError, TypeError):
    """``@async_receiver`` was given something a worker could not run; raised at decoration time.

    The message names the receiver (or what was given instead) and says what to write instead.
    """


class UnknownReceiver(RqSignalsError, PermanentJobError):
    """A job names a receiver id (or a signal of it) that is not in the registry of this process.

    Only registered receivers may run, so a job can never import an arbitrary path. Permanent once
    ``RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"]`` has passed since the job was created (before that the
    worker raises `UnknownReceiverInGrace`): the worker's code must change (deploy the receiver, or
    import its module in an ``AppConfig.ready()``), not retry.
    """


class UnknownReceiverInGrace(RqSignalsError, LookupError):
    """`UnknownReceiver` within ``RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"]`` of the job's creation.

    Not permanent: during a rolling deploy a worker still running the older code may take a job for
    a receiver only the newer code has, so the job is retried under its policy (a job without one
    fails, as under plain rq) until the grace has passed; after it the worker raises `UnknownReceiver`.
    """
