"""Fewer Redis round trips per job for the prefork worker and its horse: 7 where rq's make 20 to 24.

Between two jobs rq's worker writes its state and heartbeat several times over, each heartbeat
three commands, and checks for suspension; its horse heartbeats the job once more just before
saving the outcome. Here:

- the pipeline in which the horse saves a job's outcome also marks the worker idle and alive
  (`cleanup_execution`, which rq calls inside that pipeline); the worker only notes it
  (`note_horse_saved_idle`);
- the worker's own heartbeat is one pipeline, and a heartbeat, state write or suspension check
  repeating one sent within `bookkeeping_coalesce_seconds` is skipped;
- the horse skips rq's job heartbeat before saving the outcome when no callback runs in between.

What Redis shows is unchanged but for timing: the worker's `last_heartbeat` and a `rq suspend`
may be seen up to `bookkeeping_coalesce_seconds` later than rq would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rq.utils import now
from rq.worker import WorkerStatus

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import Worker as _WorkerBase
else:
    _WorkerBase = object


class LeanBookkeepingMixin(_WorkerBase):
    """rq's bookkeeping, minus the repeats; see the module docstring. Goes on rq's `Worker`."""

    #: Seconds within which a repeated heartbeat, state write or suspension check is skipped.
    bookkeeping_coalesce_seconds: float = 0.25

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_sent: dict[str, tuple[float, object]] = {}

    def note_horse_saved_idle(self) -> None:
        """The horse's outcome pipeline said "idle" and heartbeat for us (see `cleanup_execution`)."""
        self._state = WorkerStatus.IDLE
        self.last_heartbeat = now()
        moment = time.monotonic()
        self._last_sent["state"] = (moment, WorkerStatus.IDLE)
        self._last_sent["heartbeat"] = (moment, None)

    def cleanup_execution(
        self, job: Job, pipeline: Pipeline[Any], execution: Execution | None = None
    ) -> None:
        super().cleanup_execution(job, pipeline, execution)
        if self.is_horse:
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline[Any] | None = None) -> None:
        if self.is_horse:
            super().heartbeat(timeout, pipeline=pipeline)
        elif pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            self._last_sent["heartbeat"] = (time.monotonic(), timeout)
        elif not self._repeats("heartbeat", timeout):
            with self.connection.pipeline(transaction=False) as own:
                super().heartbeat(timeout, pipeline=own)
                own.execute()

    def set_state(self, state: str, pipeline: Pipeline[Any] | None = None) -> None:
        if pipeline is None and state == self._state and self._repeats("state", state):
            return
        super().set_state(state, pipeline=pipeline)
        self._last_sent["state"] = (time.monotonic(), state)

    def check_for_suspension(self, burst: bool) -> None:
        if not self._repeats("suspension", burst):
            super().check_for_suspension(burst)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        try:
            no_callbacks = job.success_callback is None and job.failure_callback is None
        except Exception:  # an unimportable callback: rq's own path reports it
            no_callbacks = False
        if no_callbacks:
            # rq heartbeats the job so that it looks alive while its callbacks run; with none, the
            # outcome's own pipeline follows at once.
            job.ended_at = job.last_heartbeat = now()
            return
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def _repeats(self, what: str, value: object) -> bool:
        """Whether `what` was sent with this `value` within the coalescing window; records it if not."""
        moment = time.monotonic()
        last = self._last_sent.get(what)
        if last is not None and last[1] == value and moment - last[0] < self.bookkeeping_coalesce_seconds:
            return True
        self._last_sent[what] = (moment, value)
        return False
