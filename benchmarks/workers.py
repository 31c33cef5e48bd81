"""The worker classes we compare, and running them as `rq worker` subprocesses stopped by their pid."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rq import Worker
from rq.worker import WorkerStatus

from tests.support.processes import Proc


@dataclass(frozen=True)
class WorkerClass:
    """A worker class by dotted path, and the rq class it is measured against."""

    path: str
    baseline: str | None = None
    fork_per_job: bool = True

    @property
    def short(self) -> str:
        return self.path.rsplit(".", 1)[1]

    def available(self) -> bool:
        module, _, name = self.path.rpartition(".")
        try:
            return hasattr(importlib.import_module(module), name)
        except Exception:  # a module still being written may fail to import in many ways
            return False


RQ_WORKER = WorkerClass("rq.Worker")
RQ_SIMPLE = WorkerClass("rq.SimpleWorker", fork_per_job=False)
RETRY = WorkerClass("worker.RetryWorker", baseline="rq.Worker")
SIMPLE_RETRY = WorkerClass("worker.SimpleRetryWorker", baseline="rq.SimpleWorker", fork_per_job=False)
PREFORK = WorkerClass("worker.PreforkRetryWorker", baseline="rq.Worker", fork_per_job=False)

ALL = (RQ_WORKER, RQ_SIMPLE, RETRY, SIMPLE_RETRY, PREFORK)
#: `SimpleRetryWorker` with metrics on, measured against itself with them off (the throughput benchmark).
METERED = WorkerClass(
    "benchmarks.metered.MeteredSimpleRetryWorker", baseline="worker.SimpleRetryWorker", fork_per_job=False
)


def start(
    ctx_url: str,
    worker: WorkerClass,
    queues: Sequence[str],
    *,
    log_dir: Path,
    burst: bool = False,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> Proc:
    """`python -m rq.cli worker -w CLASS [--burst] -u URL queues...`, logging to `log_dir`.

    `command` replaces the whole argument list after the interpreter (e.g. django-rq's `rqworker`).
    """
    if command is not None:
        log = log_dir / f"{worker.short}-{time.monotonic_ns()}.log"
        return Proc([sys.executable, *command], env=env, log_path=log)
    args = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "-w",
        worker.path,
        "-u",
        ctx_url,
        "--logging_level",
        "WARNING",
    ]
    if burst:
        args.append("--burst")
    args += [*extra_args, *queues]
    log = log_dir / f"{worker.short}-{time.monotonic_ns()}.log"
    return Proc(args, env=env, log_path=log)


def run_burst(
    url: str,
    worker: WorkerClass,
    queues: Sequence[str],
    *,
    log_dir: Path,
    timeout: float,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> float:
    """Run a burst worker to completion (bounded by `timeout`); its wall time in seconds."""
    began = time.perf_counter()
    proc = start(
        url, worker, queues, log_dir=log_dir, burst=True, extra_args=extra_args, env=env, command=command
    )
    try:
        code = proc.wait(timeout)
    finally:
        proc.kill()
    if code != 0:
        raise RuntimeError(f"{worker.path} exited with {code}; log:\n{proc.output()[-3000:]}")
    return time.perf_counter() - began


def wait_idle(connection: object, proc: Proc, *, timeout: float = 30.0) -> None:
    """Wait (bounded) until the worker process `proc` has registered and is idle on its queues."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"worker {proc.pid} exited early; log:\n{proc.output()[-3000:]}")
        for found in Worker.all(connection=connection):  # type: ignore[arg-type]
            if found.pid == proc.pid and found.get_state() == WorkerStatus.IDLE:
                return
        time.sleep(0.05)
    raise RuntimeError(f"worker {proc.pid} not idle after {timeout}s; log:\n{proc.output()[-3000:]}")
