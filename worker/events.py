"""Named moments of a job's life that code outside the worker can hear, without the worker knowing it.

The worker's collaborators call `emit` at four moments; anything may `connect` a hook to one (the
Django app turns them into its lifecycle signals, `rq_signals.worker_signals`). Each hook is
called as ``hook(job, **details)`` in the process where the moment happened, after what it reports
has been written to Redis. A hook that raises is logged with the job id and never changes what the
worker does; hooks add no Redis command (what they are told is already in the worker's memory).

- ``started`` (the process that runs the job, just before the job's function): ``attempt`` (1 for
  the first run), ``wait`` (float seconds from the job's ``enqueued_at`` to now, by this machine's
  clock; None if unknown).
- ``retrying`` (after the retry is saved): ``attempt`` (the attempt that failed), ``exception``,
  ``delay`` (float seconds), ``retry_at`` (an aware UTC datetime by the worker's clock; the due time
  is the Redis clock's, see `worker.retries.scheduler`); ``delay`` and ``retry_at`` are None for
  rq's own ``Retry``.
- ``exhausted`` (after the job is saved as failed, no retry left or none allowed): ``attempt``,
  ``exception`` (None when rq gave only its traceback text).
- ``recovered`` (on the worker that claimed a crashed or cut-off worker's job, after settling it):
  ``attempt`` (the attempt that crashed), ``exception`` (the `WorkerCrashed`), ``outcome``
  (``"retrying"`` or ``"failed"``), ``dead_worker`` (its name, "?" if unknown). The ``retrying``
  or ``exhausted`` moment of that job follows on the same worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from worker.retries.attempts import attempt_count

if TYPE_CHECKING:
    from rq.job import Job

logger = logging.getLogger("rq.worker.events")  # under rq's worker logger: `rq worker` prints it

Moment = Literal["started", "retrying", "exhausted", "recovered"]
MOMENTS: Final[tuple[Moment, ...]] = get_args(Moment)

Hook = Callable[..., object]

_hooks: dict[str, list[Hook]] = {moment: [] for moment in MOMENTS}


def connect(moment: Moment, hook: Hook) -> Hook:
    """Call `hook(job, **details)` at every `moment` in this process; once, however often connected."""
    hooks = _hooks[_check(moment)]
    if hook not in hooks:
        hooks.append(hook)
    return hook


def disconnect(moment: Moment, hook: Hook) -> bool:
    """Stop calling `hook` at `moment`; whether it was connected."""
    hooks = _hooks[_check(moment)]
    if hook in hooks:
        hooks.remove(hook)
        return True
    return False


def hooks(moment: Moment) -> tuple[Hook, ...]:
    """The hooks of `moment`, in the order they are called."""
    return tuple(_hooks[_check(moment)])


def has_hooks(moment: Moment) -> bool:
    """Whether anything listens to `moment` (the emitter may skip working out the details)."""
    return bool(_hooks[moment])


def emit(moment: Moment, job: Job, **details: Any) -> None:
    """Call each hook of `moment` with `job` and `details`; an error of a hook is logged, never raised."""
    for hook in list(_hooks[moment]):
        try:
            hook(job, **details)
        except Exception as exc:
            logger.error(
                "Job %s: %s hook %s raised %s: %s",
                job.id,
                moment,
                getattr(hook, "__qualname__", repr(hook)),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )


def _check(moment: str) -> str:
    if moment not in _hooks:
        raise ValueError(f"Unknown worker moment {moment!r}; the moments are {', '.join(MOMENTS)}")
    return moment


def emit_started(job: Job) -> None:
    """The ``started`` moment of `job`, in the process about to run it (the core's job start)."""
    if not _hooks["started"]:
        return
    enqueued_at = job.enqueued_at
    wait = None
    if enqueued_at is not None:
        if enqueued_at.tzinfo is None:  # rq keeps naive UTC datetimes
            enqueued_at = enqueued_at.replace(tzinfo=timezone.utc)
        wait = max(0.0, (datetime.now(timezone.utc) - enqueued_at).total_seconds())
    emit("started", job, attempt=attempt_count(job.meta) + 1, wait=wait)
