"""Proposed fixes, measured before they are made: worker subclasses that change one hot spot each.

They live here, not in `worker/`, so the benchmark can show what a fix would buy; each docstring
names the finding it answers. Not for production use.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from typing import Any

from rq.job import Job
from rq.queue import Queue

from worker.recovery import RecoveryMixin
from worker.workers import RetryWorker, SimpleRetryWorker

PR_SET_PDEATHSIG = 1
#: libc resolved once, in the worker, before any fork: `ctypes.util.find_library("c")` runs
#: `ldconfig -p` in a subprocess, which `worker.orphans.die_with_parent` does in every new horse.
_LIBC = ctypes.CDLL(None, use_errno=True)


class CachedLibcRetryWorker(RetryWorker):
    """RetryWorker whose horse arms PR_SET_PDEATHSIG through a libc handle resolved before the fork."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        if self.pid:
            _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != self.pid:
                os.kill(os.getpid(), signal.SIGKILL)
        super(RecoveryMixin, self).main_work_horse(job, queue)  # skip only RecoveryMixin's die_with_parent


class SteadyBeatSimpleRetryWorker(SimpleRetryWorker):
    """SimpleRetryWorker with one long-lived lease-renewal thread, told which job runs, instead of a
    thread started and joined around every job."""

    _beat_job: Job | None = None
    _beat_thread: threading.Thread | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self._beat_thread is None:
            self._beat_thread = threading.Thread(
                target=self._beat_forever, name="rq-signals-heartbeat", daemon=True
            )
            self._beat_thread.start()
        self._beat_job = job
        try:
            super(RecoveryMixin, self).execute_job(job, queue)  # skip only RecoveryMixin's per-job thread
        finally:
            self._beat_job = None

    def _beat_forever(self) -> None:
        stop: Any = self._recovery_stop
        while not stop.wait(self.job_monitoring_interval):
            job = self._beat_job
            if job is None:
                continue
            execution = next((e for e in list(self.executions.values()) if e.job_id == job.id), None)
            if execution is not None:
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:
                    self.log.exception("Job %s: heartbeat failed", job.id)
