"""What the chaos scenarios share: worker processes, a steady stream of signals, and the run ledger.

Nothing here sleeps to synchronise: waits poll a condition under a deadline (`wait_until`), and the
stream's pace is a `threading.Event.wait` that `stop()` cuts short.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from django.db import connection as db_connection
from django.db import transaction
from rq.worker import Worker

from tests.chaos import keys
from tests.chaos.canary import SENTINEL_DIR_ENV
from tests.chaos.workers import CLASSES
from tests.support.processes import REPO_ROOT, Proc
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

QUEUE_NAMES = ("high", "default", "low")
#: Seconds a worker subprocess may take to start (Django setup, rq registration) on a loaded machine.
WORKER_START_SECONDS = 60.0


@dataclass
class Outcome:
    """One row of the summary table."""

    scenario: str
    sent: int
    ran: int  # distinct jobs that ran to completion
    lost: int
    overlaps: int  # jobs that ran twice at the same time
    failed_as_expected: int
    seconds: float
    reruns: int = 0  # extra completed runs (at least once, so allowed), for the curious
    note: str = ""

    @classmethod
    def of_stream(
        cls, scenario: str, ledger: Ledger, sent: Sequence[str], *, began: float, note: str, overlaps: int = 0
    ) -> Outcome:
        """The row of a scenario that streams jobs and checks each completes, never twice at once.

        `overlaps` adds overlaps found beside the ledger's own (e.g. runs that never ended).
        """
        return cls(
            scenario,
            sent=len(sent),
            ran=len(ledger.completed(sent)),
            lost=len(ledger.missing(sent)),
            overlaps=overlaps + len(ledger.overlaps),
            failed_as_expected=0,
            seconds=time.monotonic() - began,
            reruns=ledger.reruns(sent),
            note=note,
        )


def format_table(rows: Sequence[Outcome]) -> list[str]:
    header = (
        "scenario",
        "sent",
        "ran",
        "lost",
        "dup-at-once",
        "failed-as-expected",
        "reruns",
        "seconds",
        "note",
    )
    body = [
        (
            row.scenario,
            str(row.sent),
            str(row.ran),
            str(row.lost),
            str(row.overlaps),
            str(row.failed_as_expected),
            str(row.reruns),
            f"{row.seconds:.1f}",
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return lines


class WorkerPool:
    """``tests/manage.py rqworker`` subprocesses with the chaos settings, stopped or killed by pid."""

    def __init__(self, tmp_path: Path, *, sentinel_dir: Path, db_name: str) -> None:
        self.tmp_path = tmp_path
        self.sentinel_dir = sentinel_dir
        self.db_name = db_name
        self.procs: list[Proc] = []
        #: More environment for the workers started from now on (a scenario's RQ_SIGNALS_TEST_SETTINGS).
        self.env: dict[str, str] = {}

    def start(
        self, server: RedisServer, kind: str = "fork", *, wait: bool = True, via: str | None = None
    ) -> Proc:
        """A worker of `kind` ("fork", "simple" or "prefork") on high, default and low.

        `via`: another URL to reach `server` by (a proxy a scenario can cut).
        """
        args = [
            sys.executable,
            str(REPO_ROOT / "tests" / "manage.py"),
            "rqworker",
            "--worker-class",
            CLASSES[kind],
        ]
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
            "RQ_SIGNALS_CHAOS_REDIS_URL": via or server.url,
            "RQ_SIGNALS_TEST_DB_NAME": self.db_name,  # PostgreSQL: pytest-django's test database
            SENTINEL_DIR_ENV: str(self.sentinel_dir),
            **self.env,
        }
        log = self.tmp_path / f"worker-{len(self.procs)}-{kind}.log"
        proc = Proc([*args, *QUEUE_NAMES], env=env, log_path=log)
        self.procs.append(proc)
        if wait:
            self.wait_ready(server, proc)
        return proc

    def start_many(self, server: RedisServer, kinds: Sequence[str]) -> list[Proc]:
        """Workers of `kinds`, started side by side (Django's start-up takes seconds on a busy machine)."""
        procs = [self.start(server, kind, wait=False) for kind in kinds]
        for proc in procs:
            self.wait_ready(server, proc)
        return procs

    def wait_ready(self, server: RedisServer, proc: Proc) -> None:
        connection = redis.Redis.from_url(server.url)
        try:

            def registered() -> bool:
                assert proc.alive(), f"worker {proc.pid} exited:\n{proc.output()[-3000:]}"
                return any(worker.pid == proc.pid for worker in Worker.all(connection=connection))

            wait_until(
                registered, timeout=WORKER_START_SECONDS, what=f"worker {proc.pid} to register", interval=0.05
            )
        finally:
            connection.close()

    def alive(self) -> list[Proc]:
        return [proc for proc in self.procs if proc.alive()]

    def stop_all(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            proc.signal(15)  # SIGTERM to all first: they shut down in parallel
        for proc in self.procs:
            proc.stop(timeout)

    def logs(self) -> str:
        return "\n".join(proc.output() for proc in self.procs)


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (a forking worker's work horse)."""
    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def send(signal: Any, tags: Iterable[str], *, hold_seconds: float = 0.0, **extra: Any) -> list[str]:
    """One committed transaction sending `signal` once per tag; the tags sent."""
    sent = []
    with transaction.atomic():
        for tag in tags:
            signal.send(sender="chaos", tag=tag, hold_seconds=hold_seconds, **extra)
            sent.append(tag)
    return sent


class Feeder(threading.Thread):
    """A steady stream: one committed transaction with one signal every `interval_seconds`, until stopped."""

    def __init__(self, make: Callable[[int], Sequence[str]], *, interval_seconds: float) -> None:
        super().__init__(name="chaos-feeder", daemon=True)
        self.make = make  # sends transaction number n, returns the tags it committed
        self.interval_seconds = interval_seconds
        self.sent: list[str] = []
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            n = 0
            while not self._stop_event.is_set():
                self.sent += self.make(n)
                n += 1
                self._stop_event.wait(self.interval_seconds)
        except BaseException as exc:  # reported by stop(): a feeder error fails the scenario
            self.errors.append(exc)
        finally:
            db_connection.close()  # this thread's own database connection

    def stop(self) -> list[str]:
        self._stop_event.set()
        self.join(30)
        assert not self.is_alive(), "the feeder did not stop within 30 s"
        assert not self.errors, f"the feeder failed: {self.errors[0]!r}"
        return self.sent


@dataclass
class Run:
    tag: str
    pid: int
    start: float  # Redis clock, seconds
    end: float | None = None


@dataclass
class Ledger:
    """What the chaos receivers wrote to Redis: every run of every tag."""

    started: dict[str, int]
    ended: dict[str, int]
    overlaps: set[str]
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @classmethod
    def read(cls, connection: redis.Redis) -> Ledger:
        ledger = cls(
            _counts(connection.hgetall(keys.STARTED)),
            _counts(connection.hgetall(keys.ENDED)),
            {tag.decode() for tag in connection.smembers(keys.OVERLAPS)},
        )
        open_runs: dict[tuple[str, int], Run] = {}
        for raw in connection.lrange(keys.LOG, 0, -1):
            tag, what, at, pid = raw.decode().rsplit(" ", 3)
            if what == "start":
                run = open_runs[(tag, int(pid))] = Run(tag, int(pid), float(at))
                ledger.runs.setdefault(tag, []).append(run)
            elif (tag, int(pid)) in open_runs:
                open_runs.pop((tag, int(pid))).end = float(at)
        return ledger

    def completed(self, tags: Iterable[str]) -> set[str]:
        return {tag for tag in tags if self.ended.get(tag, 0) > 0}

    def missing(self, tags: Iterable[str]) -> list[str]:
        return sorted(tag for tag in tags if self.ended.get(tag, 0) == 0)

    def reruns(self, tags: Iterable[str]) -> int:
        return sum(max(self.ended.get(tag, 0) - 1, 0) for tag in tags)

    def overlapping(self, deaths: dict[int, float]) -> list[tuple[Run, Run]]:
        """Pairs of runs of one tag that were under way at the same time.

        A run that never ended lasted until its process died (`deaths`, pid -> Redis time), or to
        the end of time if we never saw it die.
        """
        pairs = []
        for runs in self.runs.values():
            ordered = sorted(runs, key=lambda run: run.start)
            for earlier, later in zip(ordered, ordered[1:], strict=False):
                until = earlier.end if earlier.end is not None else deaths.get(earlier.pid, float("inf"))
                if later.start < until:
                    pairs.append((earlier, later))
        return pairs


def _counts(mapping: dict[bytes, bytes]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in mapping.items()}


def redis_time(connection: redis.Redis) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1_000_000


def wait_for_all(connection: redis.Redis, tags: Sequence[str], *, timeout: float, what: str) -> Ledger:
    """Wait until every tag has run to completion at least once; the ledger. The error names the missing."""
    deadline = time.monotonic() + timeout
    while True:
        ledger = Ledger.read(connection)
        missing = ledger.missing(tags)
        if not missing:
            return ledger
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: {len(missing)} of {len(tags)} never "
                f"completed, e.g. {missing[:10]}"
            )
        time.sleep(0.05)


def jobs_in_redis(connection: redis.Redis) -> dict[str, int]:
    """How many job ids wait on each queue, and how many job hashes exist at all (``"hashes"``)."""
    counts = {name: int(connection.llen(f"rq:queue:{name}")) for name in QUEUE_NAMES}
    counts["hashes"] = sum(1 for _ in connection.scan_iter(match="rq:job:*", count=1000))
    return counts


def failed_count(connection: redis.Redis) -> int:
    return sum(int(connection.zcard(f"rq:failed:{name}")) for name in QUEUE_NAMES)
