"""Self-fencing: a worker that cannot renew its job's lease stops the job before anyone may claim it.

A worker cut off from a Redis that stays up (a network partition) cannot renew the lease of the job
it runs (see `worker.safety.leases`), and its client waits for Redis forever
(`worker.safety.reconnect`). Without
fencing its run would go on while the worker that claims the expired lease runs the job again.
`Fence` is a watchdog thread that never touches Redis: it knows when the running job's lease last
got through to Redis and, once that is `lease_ttl - margin` seconds ago, logs why and calls
`stop(job_id)`: `LeaseGuard` kills the work horse, or exits the worker whose process runs the job.

Why the fenced run is dead before a recovered run starts, whatever the skew between the hosts' clocks:

- `since`, the moment a lease write (the start, or a renewal) counts from, is read on the worker's
  monotonic clock *before* the write is sent. Redis runs it later, so the lease it sets expires no
  earlier than `since + lease_ttl` on the Redis clock.
- The watchdog stops the run at `since + lease_ttl - margin` on the local clock, unless a later write
  got through first.
- Claimers (`scripts/recover_claim.lua`) claim only once the Redis clock is past expiry + margin,
  so no earlier than `since + lease_ttl + margin`.
- Between the stop and the earliest claim lie `2 * margin` seconds, which absorb the kill, the
  watchdog's wake-up and a difference in the rates of the two clocks of up to `2 * margin / lease_ttl`.
  An offset between the clocks does not matter: each side measures a duration from the same write
  on its own clock. What it does not absorb: the Redis host's clock (TIME) stepping forward by more
  than `2 * margin`, or, in `SimpleRetryWorker`, a job holding the GIL that long (the watchdog is a
  thread of the process running the job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from worker.threads import surviving

#: Seconds between two tries to stop a fenced run whose process is not there yet (a horse being forked).
RETRY_STOP_SECONDS = 0.01


class Fence:
    """One watchdog thread per worker process over the lease of the job that worker is running.

    `arm(job_id, since)` as the job's lease starts, `renewed(job_id, since)` after each renewal
    that got through, `disarm()` as the job ends. When the last write that got through counts from
    more than `limit` seconds ago, the job is fenced: `is_fenced(job_id)` turns true and `stop(job_id)`
    is called, under the fence's lock (so the job cannot end and another start meanwhile), then
    again every `RETRY_STOP_SECONDS` until it returns True or the job is disarmed. `stop` must not
    touch Redis. A fenced job stays fenced: later renewals do not revive it.

    The fence acts only in the process that made it: a work horse forked from the worker inherits
    a copy whose lock the watchdog may have held at the fork, so in any other process every method
    is a no-op.
    """

    def __init__(
        self,
        stop: Callable[[str], bool],
        *,
        lease_ttl: float,
        margin: float,
        log: logging.Logger,
        name: str,
    ) -> None:
        self.lease_ttl = lease_ttl
        self.margin = margin
        self.limit = lease_ttl - margin
        self._stop = stop
        self._log = log
        self._name = name
        self._owner = os.getpid()
        self._lock = threading.Condition(threading.Lock())
        self._job_id: str | None = None
        self._since = 0.0  # time.monotonic() the armed job's lease last counts from
        self._fenced: str | None = None  # the job fenced, until the next is armed
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._generation = 0  # a thread runs while it is the current one

    def arm(self, job_id: str, since: float) -> None:
        """`job_id` now holds a lease whose write was sent at `since` (time.monotonic())."""
        if not self._in_owner():
            return
        with self._lock:
            self._job_id, self._since, self._fenced, self._stopped = job_id, since, None, False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._generation,), name=self._name, daemon=True
                )
                self._thread.start()
            self._lock.notify_all()

    def renewed(self, job_id: str, since: float) -> None:
        """A renewal of `job_id`'s lease, sent at `since`, got through."""
        if not self._in_owner():
            return
        with self._lock:
            if self._job_id == job_id and self._fenced is None:
                self._since = max(self._since, since)
                self._lock.notify_all()

    def disarm(self) -> None:
        """The armed job has ended (or is being settled): it is not fenced from now on."""
        if not self._in_owner():
            return
        with self._lock:
            self._job_id = None

    def is_fenced(self, job_id: str) -> bool:
        """Whether `job_id`'s run was stopped (or is being stopped) by this fence."""
        return self._in_owner() and self._fenced == job_id

    def close(self) -> None:
        """Stop the thread, without waiting for it; `arm` would start another."""
        if not self._in_owner():
            return
        with self._lock:
            self._job_id, self._thread = None, None
            self._generation += 1
            self._lock.notify_all()

    def _in_owner(self) -> bool:
        return os.getpid() == self._owner

    def _run(self, generation: int) -> None:
        with self._lock:
            while generation == self._generation:
                job_id = self._job_id
                if job_id is None:
                    self._lock.wait()
                elif self._fenced == job_id:
                    if self._stopped:
                        self._lock.wait()
                    else:
                        self._stopped = False
                        with surviving(
                            self._log,
                            f"Job {job_id}: stopping its fenced run",
                            f"again in {RETRY_STOP_SECONDS}s",
                        ):
                            self._stopped = self._stop(job_id)
                        if not self._stopped:
                            self._lock.wait(RETRY_STOP_SECONDS)
                else:
                    unrenewed = time.monotonic() - self._since
                    if unrenewed < self.limit:
                        self._lock.wait(self.limit - unrenewed)
                        continue
                    self._fenced = job_id
                    self._log.critical(
                        "Job %s: lease not renewed for %.1fs (lease %gs); stopping its run so the "
                        "worker that recovers it never runs it alongside",
                        job_id,
                        unrenewed,
                        self.lease_ttl,
                    )


#: Exit status of a worker that fenced a job running in its own process (`SimpleRetryWorker`):
#: EX_TEMPFAIL, "try again later", so a supervisor restarts it.
FENCED_EXIT_STATUS = 75


def kill_horse(pid: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Send `sig` to work horse `pid` and its process group (the job's own children), without Redis;
    False if the horse is gone."""
    try:
        os.killpg(pid, sig)  # a horse leads its own process group
    except ProcessLookupError:
        try:
            os.kill(pid, sig)  # forked a moment ago: not yet its own group
        except ProcessLookupError:
            return False
    return True


def exit_fenced(log: logging.Logger, worker_name: str, job_id: str) -> NoReturn:
    """End this worker process, and the job running in it, at once: nothing else can stop that job."""
    log.critical(
        "Worker %s: exiting (status %d) to stop job %s, which runs in this process; its lease is "
        "recovered by another worker, and a supervisor should start this one again",
        worker_name,
        FENCED_EXIT_STATUS,
        job_id,
    )
    for handler in [*log.handlers, *logging.getLogger().handlers]:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(FENCED_EXIT_STATUS)
