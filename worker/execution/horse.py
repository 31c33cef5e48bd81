"""The long-lived work horse of `worker.execution.prefork.Prefork`: a child process that runs many
jobs, one at a time.

Two sides of one socket pair. The worker's side, `Horse`, forks the horse (`Horse.spawn`), hands
it `Order`s, waits for its `Report`s (or its death, seen through a pidfd), reaps and retires it.
The horse's side, `run_horse`, runs each job with rq's own `perform_job` (death penalty, success
and failure handling, our retry hook: all in the horse, as in rq's fork-per-job horse) and
reports its resident memory, so the worker can replace it. The horse exits when told to or when
the socket closes, and dies with its worker (`worker.safety.orphans`). Whatever goes wrong
outside a job's own failure handling ends it with `os._exit(1)`: the worker then fails the job it
was running through rq's crash path, as for rq's own horses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import random
import resource
import select
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn

from rq.executions import Execution

from worker.rq_compat import private as rq_private
from worker.run import Run
from worker.safety.orphans import die_with_parent

if TYPE_CHECKING:
    from rq.job import Job
    from rq.worker import Worker

logger = logging.getLogger("rq.worker")

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Order:
    """One job for the horse. `job_hash` is the job as `Job.restore` reads it, or None to fetch it."""

    job_id: str
    queue_name: str
    execution_id: str
    execution_created_at: float  # POSIX seconds
    job_hash: dict[bytes, bytes] | None
    #: Whether the worker's start transaction sent what rq's `prepare_job_execution` sends.
    prepared: bool = False


@dataclass(frozen=True)
class Report:
    """What the horse says after a job: which one, and its resident memory afterwards, in bytes."""

    job_id: str
    rss_bytes: int


#: (pid, wait status, rusage) of a reaped horse, as `os.wait4` gives them.
ExitStatus = tuple[int, int, Any]


class Horse:
    """The worker's handle on one work horse: its pid, its end of the channel, its job count."""

    def __init__(self, pid: int, channel: Connection) -> None:
        self.pid = pid
        self.channel = channel
        self.jobs_done = 0
        self.exit_status: ExitStatus | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll the pid between waits instead
            self._pidfd = None

    @classmethod
    def spawn(cls, worker: Worker) -> Horse:
        """Fork a horse for `worker` (call it in the worker process, between jobs)."""
        ours, theirs = multiprocessing.Pipe(duplex=True)
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            run_horse(worker, theirs, parent_pid)
        theirs.close()
        return cls(pid, ours)

    def send(self, order: Order) -> bool:
        """Hand the horse a job; False if it is gone."""
        try:
            self.channel.send(order)
        except OSError:  # BrokenPipeError, ConnectionResetError, or a channel we closed on reaping it
            return False
        return True

    def wait_report(self, timeout: float) -> Report | None:
        """The horse's report once it has one, None if `timeout` seconds pass first.

        Raises EOFError when the horse dies without reporting. Its pidfd tells, so that a child of
        a job holding a copy of the channel cannot hide the death; without one, the pid is polled.
        """
        poller = select.poll()  # not select.select: a worker may hold file descriptors past 1024
        channel_fd = self.channel.fileno()
        poller.register(channel_fd, select.POLLIN)
        if self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            step = max(0.0, deadline - time.monotonic())
            ready = poller.poll(math.ceil(1000 * (step if self._pidfd is not None else min(step, 1.0))))
            if any(fd == channel_fd for fd, _ in ready):  # a report, or the channel closed
                report: Report = self.channel.recv()  # EOFError if it died
                return report
            if ready or not self.alive():
                raise EOFError(f"work horse {self.pid} died")
            if time.monotonic() >= deadline:
                return None

    def alive(self) -> bool:
        """Whether the horse still runs (reaps it, without blocking, when it has exited)."""
        return self.exit_status is None and self.reap(block=False) is None

    def reap(self, block: bool = True) -> ExitStatus | None:
        """The horse's exit status once it has exited; None if it still runs."""
        if self.exit_status is None:
            try:
                pid, status, rusage = os.wait4(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (rq's `wait_for_horse` in a cold shutdown)
                pid, status, rusage = self.pid, 0, None
            if pid == 0:
                return None
            self.exit_status = (pid, status, rusage)
            self.close()
        return self.exit_status

    def retire(self, timeout: float = 5.0) -> bool:
        """Tell the horse to exit and close its channel; True once it has, False if it had to be killed.

        The explicit goodbye matters: a process forked by the worker later (rq's scheduler) holds a
        copy of our end of the channel, so the horse would not see it close. A horse still busy
        after `timeout` seconds is SIGKILLed.
        """
        with contextlib.suppress(OSError):
            self.channel.send(None)
        self.close()
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.reap()
                return False
            time.sleep(0.001)
        return True

    def close(self) -> None:
        self.channel.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


# -- the horse's side -----------------------------------------------------------------------------


def run_horse(worker: Worker, channel: Connection, parent_pid: int) -> NoReturn:
    """The horse's whole life, in the child right after `fork()`; never returns."""
    code = 1
    try:
        os.setpgrp()  # as rq's horse: a job's own children are killed with it (`kill_horse` uses killpg)
        die_with_parent(parent_pid)
        random.seed()
        worker.setup_work_horse_signals()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        rq_private.become_horse(worker)
        worker.log = logger
        os.environ["RQ_WORKER_ID"] = worker.name
        worker.connection.ping()  # connect now, while the worker dequeues the first job
        _serve(worker, channel)
        code = 0
    except BaseException:
        logger.exception("Worker %s: work horse %d failed outside a job, exiting", worker.name, os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(worker: Worker, channel: Connection) -> None:
    """Run orders until the channel closes or says None."""
    # A job's signal mask and handlers (SIGALRM is rq's death penalty) must not outlive it.
    signal_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    pid = os.getpid()
    while True:
        try:
            order: Order | None = channel.recv()
        except EOFError:
            return
        if order is None:
            return
        _perform(worker, order)
        if os.getpid() != pid:  # a child the job forked returned here: it must not speak for the horse
            os._exit(0)
        _reset_signals(worker, signal_mask)
        channel.send(Report(order.job_id, resident_bytes()))


def _reset_signals(worker: Worker, signal_mask: set[int | signal.Signals]) -> None:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # an alarm left pending is discarded ...
    signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)  # ... not delivered when unblocked here
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    worker.setup_work_horse_signals()  # type: ignore[no-untyped-call]  # rq leaves it unannotated


def _perform(worker: Worker, order: Order) -> None:
    job = _load_job(worker, order)
    queue = next((queue for queue in worker.queues if queue.name == order.queue_name), None)
    if queue is None:
        queue = worker.queue_class(
            order.queue_name,
            connection=worker.connection,
            job_class=worker.job_class,
            serializer=worker.serializer,
            death_penalty_class=worker.death_penalty_class,
        )
    execution = Execution(order.execution_id, job.id, connection=worker.connection, worker_name=worker.name)
    execution.created_at = datetime.fromtimestamp(order.execution_created_at, tz=timezone.utc)
    rq_private.attach_job(execution, job)
    worker.executions = {execution.id: execution}
    worker.run = Run(job.id, prepared=order.prepared)  # type: ignore[attr-defined]  # the worker core's
    os.environ["RQ_JOB_ID"] = job.id
    # rq's perform_job handles the job's own failures (retry hook included); what escapes it is a
    # bug or a lost Redis, and ends the horse so the worker records a crash, as rq's horse does.
    worker.perform_job(job, queue, execution)


def _load_job(worker: Worker, order: Order) -> Job:
    job: Job
    if order.job_hash is None:
        job = worker.job_class.fetch(order.job_id, connection=worker.connection, serializer=worker.serializer)
    else:
        job = worker.job_class(order.job_id, connection=worker.connection, serializer=worker.serializer)
        job.restore(order.job_hash)
    job.redis_server_version = worker.get_redis_server_version()  # type: ignore[no-untyped-call]  # rq: untyped
    return job


def resident_bytes() -> int:
    """This process's resident set size now (Linux), else its peak (other POSIX systems)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
