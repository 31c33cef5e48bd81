"""Count Redis round trips and commands, per process and thread, forked work horses included.

A round trip is one write of packed commands to a Redis socket that the client then waits on: one
command, or one whole pipeline (MULTI ... EXEC counts as one round trip of all its commands). The
hook wraps redis-py's `AbstractConnection.send_packed_command`, so it sees every connection of every
client in this process and in the processes it forks (rq's work horses, our prefork horse), and
appends one line per round trip to a file opened O_APPEND, which every process shares:

    <pid> <thread name> <command> <command> ...

`per_job` runs a burst worker twice, over `few` and `many` no-op jobs, and divides the difference,
so start-up and shut-down costs cancel out. Only the worker's main threads count (the worker's and
its horses'); the promoter, recovery and pub/sub threads run on a clock, not per job. The worker's
own connection handshakes are left out too (how many depends on when its threads borrow one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.connection import AbstractConnection
from rq import Queue
from rq.worker import BaseWorker

MAIN_THREAD = "MainThread"
#: What redis-py sends when it opens a connection (`AbstractConnection.on_connect`).
HANDSHAKE = frozenset({"HELLO", "AUTH", "CLIENT", "SELECT"})


def noop() -> None:
    """The job whose cost is all bookkeeping."""


def fail() -> None:
    """The job whose cost is all failure handling."""
    raise ValueError("round trips of a failing job")


def command_names(packed: Any) -> list[str]:
    """The command names in `packed` (bytes, or a list of chunks, as redis-py sends them)."""
    if isinstance(packed, (bytes, bytearray, memoryview, str)):
        packed = [packed]
    data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in packed)
    names, at = [], 0
    while at < len(data):
        if data[at : at + 1] != b"*":
            raise ValueError(f"not a RESP array at byte {at}: {data[at : at + 20]!r}")
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1 : end]), end + 2
        for index in range(count):
            end = data.index(b"\r\n", at)
            length = int(data[at + 1 : end])
            value = data[end + 2 : end + 2 + length]
            at = end + 2 + length + 2
            if index == 0:
                names.append(value.decode().upper())
    return names


@dataclass
class RoundTrip:
    pid: int
    thread: str
    commands: list[str]


@contextlib.contextmanager
def recording(path: Path) -> Iterator[Callable[[], list[RoundTrip]]]:
    """Log every round trip made while inside to `path`; yields a function that reads them back."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    original = AbstractConnection.send_packed_command

    def send_packed_command(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        names = command_names(command)
        line = f"{os.getpid()}\t{threading.current_thread().name}\t{' '.join(names)}\n"
        os.write(fd, line.encode())
        original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    try:
        yield lambda: read(path)
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        os.close(fd)


def read(path: Path) -> list[RoundTrip]:
    trips = []
    for line in path.read_text().splitlines():
        pid, thread, commands = line.split("\t")
        trips.append(RoundTrip(int(pid), thread, commands.split()))
    return trips


@dataclass
class Cost:
    """Redis cost of one processed job, from the difference of two burst runs."""

    worker: str
    round_trips: float
    commands: float
    #: Round trips of the run over `many` jobs, by command names, divided by the job count.
    trace: Counter[str] = field(default_factory=Counter)


def burst(
    worker_class: type[BaseWorker],
    url: str,
    jobs: int,
    log: Path,
    queue_name: str = "round-trips",
    func: Callable[[], None] = noop,
    **worker_kwargs: Any,
) -> list[RoundTrip]:
    """Run a burst worker of `worker_class` over `jobs` no-op jobs; its main threads' round trips."""
    setup = redis.Redis.from_url(url)
    setup.flushall()
    setup.script_flush()  # every run loads its scripts once, the same
    queue = Queue(queue_name, connection=setup)
    with setup.pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue(func, pipeline=pipeline)
        pipeline.execute()
    setup.close()
    connection = redis.Redis.from_url(url)
    try:
        worker = worker_class(
            [Queue(queue_name, connection=connection)], connection=connection, **worker_kwargs
        )
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            with recording(log) as trips:
                worker.work(burst=True, logging_level="WARNING")
                found = trips()
        finally:
            for signum, handler in handlers.items():  # work() installs rq's; give the caller its own back
                signal.signal(signum, handler)
    finally:
        connection.close()
    check = redis.Redis.from_url(url)
    try:
        done = Queue(queue_name, connection=check)
        ended = done.finished_job_registry.count + done.failed_job_registry.count
    finally:
        check.close()
    if ended != jobs:
        raise AssertionError(f"{worker_class.__name__}: {ended} of {jobs} jobs ended")
    # The worker's own connections are opened once, or again when a background thread holds the
    # pooled one at that moment; a forked horse opens one per job, which is part of its cost.
    me = os.getpid()
    return [
        trip
        for trip in found
        if trip.thread == MAIN_THREAD and not (trip.pid == me and HANDSHAKE.issuperset(trip.commands))
    ]


def per_job(
    worker_class: type[BaseWorker],
    url: str,
    tmp: Path,
    *,
    few: int = 5,
    many: int = 25,
    func: Callable[[], None] = noop,
    **worker_kwargs: Any,
) -> Cost:
    """Round trips and commands per job of `func`: (run over `many`) - (run over `few`), over `many - few`."""
    name = worker_class.__name__
    small = burst(worker_class, url, few, tmp / f"{name}-{few}.log", func=func, **worker_kwargs)
    large = burst(worker_class, url, many, tmp / f"{name}-{many}.log", func=func, **worker_kwargs)
    jobs = many - few
    trace: Counter[str] = Counter(" ".join(trip.commands) for trip in large)
    return Cost(
        worker=worker_class.__name__,
        round_trips=(len(large) - len(small)) / jobs,
        commands=(sum(len(t.commands) for t in large) - sum(len(t.commands) for t in small)) / jobs,
        trace=Counter({key: count / many for key, count in trace.items()}),
    )
