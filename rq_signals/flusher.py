"""The background flush, ``RQ_SIGNALS["FLUSH"] = "background"``: one writer thread per process pushes jobs.

In the default ``"commit"`` mode the committing thread writes its transaction's jobs to Redis (one
pipeline) before ``save()`` or ``atomic()`` returns: the request waits one Redis round trip. In
``"background"`` mode the after-commit callback hands the jobs, already encoded and size-checked
at send time (errors still surface in the sender), to `submit` and returns. One daemon thread per
process, ``rq-signals-flush``, started by the first `submit`, takes everything pending and writes
it with the commit path's one-request code (`rq_signals.jobwriter.write_group`): transactions
that pile up while it writes go out together, in one round trip per Redis server.

What Redis refuses goes to the outbox of the database that committed it, as in the commit path
(``RQ_SIGNALS["OUTBOX"]`` as it was at commit; ``"off"``: an error naming receivers and job ids),
written through the writer thread's own database connection, closed after. ``OUTBOX="always"``
jobs (rows written inside the transaction) are delivered by the writer as the commit path
delivers them (`rq_signals.outbox.deliver`).

The trade: a process killed hard (SIGKILL, the OOM killer) right after a commit loses the jobs
the writer has not written yet. The commit mode has that window too (one round trip, inside
``save()``); this mode adds the time jobs wait for the writer. An orderly exit loses nothing: at
interpreter exit an ``atexit`` hook waits for the writer (at most `EXIT_TIMEOUT_SECONDS`), and
`flush_jobs` does the same on demand (`rq_signals.jobs.run_receiver` calls it after each receiver:
rq's work horses leave with ``os._exit()``, which skips ``atexit``); jobs still unwritten at the
deadline go to the outbox of their database (or, if that fails, are logged by id). After
``fork()`` the child starts with no pending jobs and no writer: the parent's jobs are the
parent's to write.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from django.db import connections
from redis.exceptions import RedisError

from rq_signals.defaults import OutboxMode
from rq_signals.jobspec import JobSpec, list_ids, list_receivers

logger = logging.getLogger(__name__)

#: The name of the writer thread (one per process), as ``ps -L``, py-spy and thread dumps show it.
THREAD_NAME: Final = "rq-signals-flush"
#: Seconds the ``atexit`` hook waits for the writer before it puts what is left in the outbox.
EXIT_TIMEOUT_SECONDS: Final = 5.0
#: Seconds `flush_jobs` waits by default.
FLUSH_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Committed:
    """One commit's jobs on database `alias`: to write in one pipeline, and to deliver from the outbox."""

    alias: str
    specs: Sequence[JobSpec]
    outboxed: Sequence[JobSpec]  # OUTBOX="always": rows written in the transaction, delivered then deleted
    outbox_mode: OutboxMode  # RQ_SIGNALS["OUTBOX"] at commit
    committed_at: float | None = None  # time.time() at commit: where receiver_enqueued's latency starts

    def job_ids(self) -> list[str]:
        return [spec.job_id for spec in (*self.outboxed, *self.specs)]


class _Writer:
    """The pending commits of this process and the thread that writes them; all state under `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.has_work = threading.Condition(self.lock)  # the writer waits here for commits
        self.went_idle = threading.Condition(self.lock)  # `wait` waits here for the writer
        self.pending: list[Committed] = []
        self.writing: list[Committed] = []
        self.thread: threading.Thread | None = None
        self.closed = False  # after the exit flush: the commit path writes instead

    def submit(self, committed: Committed) -> bool:
        with self.lock:
            if self.closed:
                return False
            self.pending.append(committed)
            if self.thread is None:
                _install_process_hooks()
                self.thread = threading.Thread(target=self.run, name=THREAD_NAME, daemon=True)
                self.thread.start()
            self.has_work.notify()
        return True

    def run(self) -> None:
        while True:
            with self.lock:
                while not self.pending:
                    self.has_work.wait()
                batch, self.pending = self.pending, []
                self.writing = batch
            try:
                write(batch)
            finally:
                with self.lock:
                    self.writing = []
                    self.went_idle.notify_all()

    def wait(self, timeout: float, *, at_exit: bool) -> bool:
        """Wait until nothing is pending or being written; True if so within `timeout` seconds.

        At the deadline every job left is logged by id. Jobs the writer has not taken are taken
        from it and kept in the outbox by the calling thread (under ``OUTBOX="off"`` they stay
        with the writer). Jobs being written stay with the writer, except `at_exit`: the process is
        about to end, so they are kept in the outbox too (the relay does not enqueue a job id Redis
        already has, so one that did get through is not enqueued twice).
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            if at_exit:
                self.closed = True
            while self.pending or self.writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.went_idle.wait(left)
            else:
                return True
            if at_exit:
                untaken, self.pending = self.pending + self.writing, []
            else:  # OUTBOX="off": nowhere to keep them, and the writer may still write them
                untaken = [committed for committed in self.pending if committed.outbox_mode != "off"]
                self.pending = [committed for committed in self.pending if committed.outbox_mode == "off"]
            left_to_writer = [] if at_exit else self.writing + self.pending
        _report_timeout(timeout, untaken, left_to_writer)
        _keep(untaken, error=TimeoutError(f"not written within {timeout}s"))
        return False


_writer = _Writer()


def submit(committed: Committed) -> bool:
    """Hand a commit's jobs to the writer thread (started on first use); False after the exit flush.

    Called in the committing thread: a lock, a list append and a wake-up, no I/O.
    """
    return _writer.submit(committed)


def flush_jobs(timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
    """Wait, at most `timeout` seconds, until every committed job of this process is written; True if so.

    With ``RQ_SIGNALS["FLUSH"] = "background"`` the jobs of committed transactions reach Redis a
    little after the commit, from a writer thread; call this where a process must know they are
    there (before an exit that bypasses ``atexit``, such as ``os._exit``; in a test). "Written"
    means Redis took them, or refused them and they went to the outbox, as in the commit path. On
    a timeout the job ids left are logged, and the jobs the writer has not taken yet go to the
    outbox (under ``OUTBOX="off"`` they stay with the writer). With ``"commit"`` there is nothing
    to wait for: it returns True at once.
    """
    return _writer.wait(timeout, at_exit=False)


def write(batch: Sequence[Committed]) -> None:
    """Write `batch` to Redis (one pipeline per Redis server); what Redis refuses goes to the outbox.

    Runs in the writer thread, which must not die: anything unexpected is logged with its job ids.
    The database connections it opened (outbox rows) are this thread's, closed before it returns.
    """
    # Not at module level: settings.py may `import rq_signals` (so us); django_rq reads settings at import.
    from rq_signals import jobwriter

    aliases = {committed.alias for committed in batch if committed.outboxed}
    specs = [spec for committed in batch for spec in committed.specs]
    try:
        for committed in batch:
            if committed.outboxed:
                _deliver(committed)
        for group in jobwriter.by_connection(specs):
            try:
                jobwriter.write_group(group, committed_at=_commit_times(batch))
            except (RedisError, OSError) as exc:
                refused = [_only(committed, group) for committed in batch]
                aliases.update(committed.alias for committed in refused if committed.specs)
                _keep(refused, error=exc)
            except Exception:  # not Redis refusing: the commit path would have raised it in the request
                _log_lost([_only(committed, group) for committed in batch])
    except Exception:  # grouping failed (a queue gone from RQ_QUEUES): nothing of the batch was written
        _log_lost([_only(committed, specs) for committed in batch])
    finally:
        for alias in aliases:
            connections[alias].close()


def _deliver(committed: Committed) -> None:
    from rq_signals import outbox  # imports models: not before Django's app loading

    try:
        outbox.deliver(committed.outboxed, using=committed.alias, committed_at=committed.committed_at)
    except Exception:  # the rows are still there: the relay will send them
        logger.exception(
            "Receivers %s: %d job(s) of a committed transaction wait in the outbox of database %r "
            "for the relay: %s",
            list_receivers(_specs([committed])),
            len(committed.outboxed),
            committed.alias,
            list_ids(_job_ids([committed])),
        )


def _keep(batch: Iterable[Committed], *, error: BaseException) -> None:
    """Store jobs that were not written in the outbox of their database, as the commit path does."""
    from rq_signals import outbox  # imports models: not before Django's app loading

    for committed in batch:
        if not committed.specs:
            continue
        if committed.outbox_mode == "off":
            logger.error(
                "Receivers %s: Redis did not take %d job(s) after commit (%s) and "
                'RQ_SIGNALS["OUTBOX"] is "off": lost: %s',
                list_receivers(_specs([committed])),
                len(committed.specs),
                outbox.describe_error(error),
                list_ids(_job_ids([committed])),
            )
            continue
        try:
            outbox.store_unsent(committed.specs, using=committed.alias, error=error)
        except Exception:
            logger.exception(
                "Receivers %s: Redis did not take %d job(s) after commit (%s), nor did the outbox of "
                "database %r: lost: %s",
                list_receivers(_specs([committed])),
                len(committed.specs),
                outbox.describe_error(error),
                committed.alias,
                list_ids(_job_ids([committed])),
            )


def _log_lost(batch: list[Committed]) -> None:
    logger.exception(
        "Receivers %s: %d job(s) of committed transactions could not be enqueued: %s",
        list_receivers(_specs(batch)),
        sum(len(committed.job_ids()) for committed in batch),
        list_ids(_job_ids(batch)),
    )


def _report_timeout(timeout: float, untaken: list[Committed], left_to_writer: list[Committed]) -> None:
    for batch, where in ((left_to_writer, "still with the writer thread"), (untaken, "kept in the outbox")):
        if batch:
            logger.warning(
                "Receivers %s: %d job(s) not written to Redis within %ss; %s: %s",
                list_receivers(_specs(batch)),
                sum(len(committed.job_ids()) for committed in batch),
                timeout,
                where,
                list_ids(_job_ids(batch)),
            )


def _only(committed: Committed, group: Sequence[JobSpec]) -> Committed:
    """`committed` with only its jobs of `group` to write (and none to deliver)."""
    ids = {spec.job_id for spec in group}
    specs = [spec for spec in committed.specs if spec.job_id in ids]
    return Committed(committed.alias, specs, (), committed.outbox_mode, committed.committed_at)


def _commit_times(batch: Iterable[Committed]) -> dict[str, float]:
    """When each job's transaction committed, by job id."""
    return {
        spec.job_id: committed.committed_at
        for committed in batch
        if committed.committed_at is not None
        for spec in committed.specs
    }


def _specs(batch: Iterable[Committed]) -> list[JobSpec]:
    return [spec for committed in batch for spec in (*committed.specs, *committed.outboxed)]


def _job_ids(batch: Iterable[Committed]) -> list[str]:
    return [job_id for committed in batch for job_id in committed.job_ids()]


def _flush_at_exit() -> None:
    _writer.wait(EXIT_TIMEOUT_SECONDS, at_exit=True)


def _forget_in_child() -> None:
    """After ``fork()``: no pending jobs (they are the parent's), no writer (threads do not survive a fork),
    and a fresh lock (the parent's may have been held at that moment)."""
    global _writer
    _writer = _Writer()  # `rq_signals.queues` renews its own lock after a fork


_hooks_installed = False


def _install_process_hooks() -> None:
    """Once per process, with the first writer (a forked child inherits them): exit flush, fork reset."""
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_flush_at_exit)
        os.register_at_fork(after_in_child=_forget_in_child)
