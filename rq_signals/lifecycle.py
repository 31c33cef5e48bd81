"""Django signals about receiver calls, from the commit that enqueues one to its last attempt.

Connect to them (plain Django receivers, in a ``receivers`` module or ``AppConfig.ready()``) for
metrics or alerts. The sender is the receiver function (None if this process does not register the
receiver); every signal has ``receiver_id`` (dotted path), ``job_id`` (None when not run by a
worker, e.g. under ``EAGER``), ``attempt`` (1 for the first run; requeued jobs keep counting) and
``instance``: the model instance the call is about as an `InstanceRef` (label and pk, read from
the job's payload, never fetched), None if the call has no model instance argument. They are
sent robustly: an error in a listener is logged with the job id and never changes the job. Times
are float seconds; datetimes are aware, in UTC.

Sent in the web process (whichever process wrote the job to Redis), by `rq_signals.jobwriter`:

- ``receiver_enqueued``: the job is in Redis; ``queue``, and ``latency``: seconds from the commit
  (from the send, for a job sent outside a transaction; from the outbox row's creation, for a job
  the relay sent) to Redis acknowledging the write. ``attempt`` is 1. Not sent under ``EAGER``.

Sent in the worker process that runs the job, by `rq_signals.jobs.run_receiver`:

- ``receiver_started``: the job is about to call the receiver; ``wait``: seconds since the job
  was enqueued (rq's ``enqueued_at``, by the sender's clock; for a retry, since the retry was due,
  by the Redis server's), by this worker's clock; None if unknown.
- ``receiver_succeeded``: the receiver returned.
- ``receiver_skipped``: the receiver was not called; ``reason`` says why (a row it needed is gone).
- ``receiver_failed``: the receiver raised ``exception``; ``will_retry`` says whether the job's
  ``Backoff`` retries it (as the retry worker will decide: same policy, same attempt count).

Sent by the worker once the outcome of a failed attempt is saved (`rq_signals.worker_signals`, from
`worker.events`), in the process that handled it (a forking worker's horse, or the worker that
recovered a crashed job):

- ``receiver_retrying``: attempt ``attempt`` failed with ``exception`` (None if its horse died
  without one) and the job runs again in ``delay`` seconds, at about ``retry_at`` (both None under
  rq's own ``Retry``).
- ``receiver_exhausted``: attempt ``attempt`` failed and no retry is left (or none is allowed):
  the job is in the failed registry. The one to page someone about or report to an error tracker.
- ``receiver_recovered``: the worker running the job died or was cut off from Redis; this worker
  took the job over. ``exception`` is the `WorkerCrashed` recorded as attempt ``attempt``,
  ``outcome`` is ``"retrying"`` or ``"failed"``, ``dead_worker`` the lost worker's name.
  ``receiver_retrying`` or ``receiver_exhausted`` follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal
from rq.job import Job

from rq_signals.exceptions import PayloadError
from rq_signals.payload import decode_value
from rq_signals.values import TAG
from worker.retries.attempts import attempt_count
from worker.retries.policy import plan_retry, policy_of

logger = logging.getLogger(__name__)

receiver_enqueued = Signal()
receiver_started = Signal()
receiver_succeeded = Signal()
receiver_skipped = Signal()
receiver_failed = Signal()
receiver_retrying = Signal()
receiver_exhausted = Signal()
receiver_recovered = Signal()


@dataclass(frozen=True)
class InstanceRef:
    """The model instance a receiver call is about, as its payload carries it (never fetched)."""

    label: str  # "app_label.ModelName"
    pk: Any

    def __str__(self) -> str:
        return f"{self.label} pk={self.pk}"


def instance_of(payload: Any) -> InstanceRef | None:
    """The call's ``instance`` argument (model signals), else its first model argument; None if none."""
    kwargs = payload.get("kwargs") if isinstance(payload, dict) else None
    if not isinstance(kwargs, dict):
        return None
    first = [kwargs["instance"]] if "instance" in kwargs else []
    for value in (*first, *kwargs.values()):
        if isinstance(value, dict) and value.get(TAG) == "model" and isinstance(value.get("v"), dict):
            data = value["v"]
            return InstanceRef(str(data.get("label")), _pk(data.get("pk")))
    return None


def _pk(data: Any) -> Any:
    try:
        return decode_value(data)
    except (PayloadError, ValueError, TypeError):  # a forged payload: shown as it is
        return data


def attempt_number(job: Job | None) -> int:
    """This run's attempt number: one more than the attempts the worker has recorded so far."""
    if job is None:
        return 1
    return attempt_count(job.meta) + 1


def will_retry(job: Job | None, exc: BaseException) -> bool:
    """Whether the retry worker will retry `job` after `exc` (no job or no policy: it will not)."""
    if job is None:
        return False
    policy = policy_of(job)
    if policy is None:
        return False
    return plan_retry(policy, exc, job.meta, rng=_no_jitter).outcome == "retrying"


def send(
    signal: Signal,
    func: Any,
    receiver_id: str,
    job: Job | None,
    *,
    job_id: str | None = None,
    attempt: int | None = None,
    payload: Any = None,
    **details: Any,
) -> None:
    """Send a lifecycle signal robustly; a listener's error is logged, never raised.

    `job_id` and `attempt` default to `job`'s id and this run's `attempt_number`; `payload` (the
    call's, as `run_receiver` gets it) gives the ``instance``.
    """
    if not signal.receivers:  # the usual case on a hot path: nobody listens
        return
    job_id = job.id if job is not None else job_id
    number = attempt if attempt is not None else attempt_number(job)
    responses = signal.send_robust(
        sender=func,
        receiver_id=receiver_id,
        job_id=job_id,
        attempt=number,
        instance=instance_of(payload),
        **details,
    )
    for listener, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "Job %s: lifecycle listener %r of receiver %s raised %s: %s",
                job_id,
                listener,
                receiver_id,
                type(response).__name__,
                response,
            )


def _no_jitter(low: float, high: float) -> float:
    return low
