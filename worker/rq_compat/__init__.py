"""The seam between us and rq's internals. Nothing outside this package names rq's private attributes
or writes rq's Redis layout by hand.

- `worker.rq_compat.private`: every underscored name of rq's that we use, one function each;
- `worker.rq_compat.layout`: every key of rq's that we spell and every write of rq's layout made
  outside rq's API, with the Lua scripts that make them (`scripts/`).

On import, `check()` looks for everything both rely on in the installed rq and raises
`RqIncompatible` (an ImportError) naming the rq version and each missing name, rather than failing
mid-job later. `SUPPORTED` is the rq release line whose own test suite `make compat` has passed
with our worker classes; setup.cfg pins rq to it.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.worker import BaseWorker, Worker
from rq.worker import base as rq_worker_base

#: rq releases whose own test suite passes with our worker classes (`make compat`).
SUPPORTED = "3.0"

#: Methods and class attributes we call or override, by owner.
REQUIRED: tuple[tuple[type, str], ...] = (
    (BaseWorker, "_start_scheduler"),
    (BaseWorker, "_release_slot_safely"),
    (BaseWorker, "prepare_execution"),
    (BaseWorker, "prepare_job_execution"),
    (BaseWorker, "cleanup_execution"),
    (BaseWorker, "handle_execution_ended"),
    (BaseWorker, "maintain_heartbeats"),
    (BaseWorker, "perform_job"),
    (Worker, "_handle_stopped_job"),
    (Job, "_handle_failure"),
    (Job, "_deserialize_data"),
    (Queue, "_enqueue_job"),
    (Queue, "dequeue_any"),
    (Queue, "lmove"),
    (Queue, "lpop"),
    (Job, "fetch"),
    (Job, "refresh"),
    (Job, "restore"),
    (Queue, "intermediate_queue_key"),
    (Queue, "redis_queue_namespace_prefix"),
    (Job, "redis_job_namespace_prefix"),
)
#: Attributes rq sets in `__init__` (checked in its source) that we read or write, by class.
INSTANCE_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (
        BaseWorker,
        (
            "_state",
            "_stopped_job_id",
            "_horse_pid",
            "_is_horse",
            "_ordered_queues",
            "_exc_handlers",
            "_shutdown_requested_date",
            "_stop_requested",
        ),
    ),
    (
        Job,
        (
            "_success_callback_name",
            "_failure_callback_name",
            "_stopped_callback_name",
            "_exc_info",
            "_unreadable_meta",
            "_result",
        ),
    ),
    (RQScheduler, ("_acquired_locks", "_scheduled_job_registries")),
    (Queue, ("_is_async", "_default_timeout")),
)


class RqIncompatible(ImportError):
    """The installed rq lacks something our worker relies on."""


def missing_names() -> list[str]:
    """What the installed rq lacks of what we rely on (empty: nothing)."""
    missing = [f"{owner.__name__}.{name}" for owner, name in REQUIRED if not hasattr(owner, name)]
    for owner, names in INSTANCE_ATTRIBUTES:
        source = inspect.getsource(vars(owner)["__init__"])
        missing += [f"{owner.__name__}().{name}" for name in names if f"self.{name}" not in source]
    if not hasattr(rq_worker_base, "signal_name"):
        missing.append("rq.worker.base.signal_name")
    if "_job" not in inspect.getsource(Execution.job.fget):  # type: ignore[attr-defined]
        missing.append("Execution._job")
    return missing


def check() -> None:
    """Raise `RqIncompatible` naming the rq version and each missing name, if any is missing."""
    missing = missing_names()
    if missing:
        raise RqIncompatible(
            f"rq {version('rq')}: {', '.join(missing)} missing; rq_signals' worker supports rq "
            f"{SUPPORTED}.x (see docs/compat.md)"
        )


check()
