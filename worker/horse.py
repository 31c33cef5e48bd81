"""The long-lived work horse of `PreforkMixin`: a child process that runs many jobs, one at a time.

Forked once and reused, it reads orders from its end of a socket pair, runs each job with rq's
own `perform_job` (death penalty, success and failure handling, our retry hook: all in the horse,
as in rq's fork-per-job horse) and answers with its resident memory, so its worker can replace
it. It exits when the socket closes (its worker retired it, or died), and on Linux the kernel
kills it when its worker dies (PR_SET_PDEATHSIG), so it never outlives its worker. Anything that
goes wrong outside a job's own failure handling ends it with `os._exit(1)`: its worker then
fails the job it was running through the crash path, as rq does for its own horses.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, NoReturn

from rq.executions import Execution

from worker.orphans import die_with_parent

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


@dataclass(frozen=True)
class Report:
    """What the horse says after a job: which one, and its resident memory afterwards, in bytes."""

    job_id: str
    rss_bytes: int


def run_horse(worker: Worker, channel: Connection, parent_pid: int) -> NoReturn:
    """The horse's whole life, in the child right after `fork()`; never returns."""
    code = 1
    try:
        os.setpgrp()  # as rq's horse: a job's own children are killed with it (`kill_horse` uses killpg)
        die_with_parent(parent_pid)
        random.seed()
        worker.setup_work_horse_signals()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        worker._is_horse = True
        worker._horse_pid = 0
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
    # A job that blocks signals (SIGALRM: rq's death penalty) must not leave them blocked for the next.
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
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
        channel.send(Report(order.job_id, resident_bytes()))


def _perform(worker: Worker, order: Order) -> None:
    job = _load_job(worker, order)
    queue = worker.queue_class(
        order.queue_name,
        connection=worker.connection,
        job_class=worker.job_class,
        serializer=worker.serializer,
        death_penalty_class=worker.death_penalty_class,
    )
    execution = Execution(order.execution_id, job.id, connection=worker.connection, worker_name=worker.name)
    execution.created_at = datetime.fromtimestamp(order.execution_created_at, tz=timezone.utc)
    execution._job = job
    worker.executions = {execution.id: execution}
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
