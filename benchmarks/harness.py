"""What every benchmark shares: the run context, the shape of a result, Redis counters.

A benchmark is a function `run(ctx: Context) -> Section`. It measures its figure and its baselines
in the same run (interleaved where it can), against `ctx.redis_url`, a private redis-server.
"""

from __future__ import annotations

import json
import resource
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks.stats import Summary


@dataclass
class Context:
    """One run of the suite: the private Redis, the mode, where logs go."""

    redis_url: str
    quick: bool
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rq-signals-bench-")))

    def connection(self) -> redis.Redis[bytes]:
        return redis.Redis.from_url(self.redis_url)

    def flush(self) -> None:
        """Empty the private server between measurements (never the shared one: it is not ours)."""
        conn = self.connection()
        try:
            conn.flushall()
        finally:
            conn.close()

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Row:
    """One figure: what was measured, its summary over repeats, and how it compares."""

    label: str
    summary: Summary | None
    unit: str
    digits: int = 1
    scale: float = 1.0
    ratio: Summary | None = None
    ratio_to: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def value(self) -> str:
        if self.summary is None:
            return "not available yet"
        return self.summary.format(self.digits, self.scale)


@dataclass
class Section:
    """The result of one benchmark: rows plus the method that produced them."""

    name: str
    title: str
    method: str
    rows: list[Row] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    seconds: float = 0.0


def dump_sections(sections: Sequence[Section]) -> str:
    """Sections as JSON, for a subprocess of the suite to hand its results back (the PostgreSQL pass)."""
    return json.dumps([asdict(section) for section in sections])


def load_sections(text: str) -> list[Section]:
    """The sections `dump_sections` wrote."""
    sections = []
    for fields in json.loads(text):
        rows = [load_row(row) for row in fields.pop("rows")]
        sections.append(Section(**fields, rows=rows))
    return sections


def load_row(fields: dict[str, Any]) -> Row:
    summary, ratio = fields.pop("summary"), fields.pop("ratio")
    return Row(**fields, summary=summary and Summary(**summary), ratio=ratio and Summary(**ratio))


def unavailable(name: str, title: str, method: str, why: str) -> Section:
    """A section for a benchmark whose subject has not landed: says so instead of a number."""
    return Section(name, title, method, extra=[f"**Not available yet**: {why}"])


@dataclass(frozen=True)
class Counters:
    """Server-wide counters of the private Redis at one moment (`INFO stats` + `INFO commandstats`).

    `reads` is `total_reads_processed`: the read events the server handled. A client sends one
    request (a command, or a whole pipeline) and waits for the reply before the next, so for
    requests under the socket buffer size (all of ours) read events equal round trips. `cpu` is
    the server's CPU time in seconds (`used_cpu_user` + `used_cpu_sys`, `INFO cpu`).
    """

    commands: int
    reads: int
    per_command: dict[str, int]
    cpu: float = 0.0

    @classmethod
    def take(cls, conn: redis.Redis[bytes]) -> Counters:
        with conn.pipeline(transaction=False) as pipe:
            pipe.info("stats")
            pipe.info("commandstats")
            pipe.info("cpu")
            stats, commandstats, cpu = pipe.execute()
        per_command = {
            key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in commandstats.items()
        }
        return cls(
            int(stats["total_commands_processed"]),
            int(stats["total_reads_processed"]),
            per_command,
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )

    def since(self, before: Counters) -> Counters:
        """The difference, minus the one request (three INFO commands) that took `self`."""
        per_command = {
            name: calls - before.per_command.get(name, 0)
            for name, calls in self.per_command.items()
            if calls - before.per_command.get(name, 0) > 0
        }
        if "info" in per_command:
            per_command["info"] -= 3
            if per_command["info"] <= 0:
                del per_command["info"]
        return Counters(
            self.commands - before.commands - 3,
            self.reads - before.reads - 1,
            per_command,
            self.cpu - before.cpu,
        )


def top_commands(counters: Counters, jobs: int, limit: int = 8) -> str:
    """`hset 4.0, zadd 3.0, ...`: the most frequent commands per job."""
    ranked = sorted(counters.per_command.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(f"{name} {calls / jobs:.1f}" for name, calls in ranked)


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process this process has waited for, and their
    waited-for children: a worker subprocess and the work horses it reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ClientRequests:
    """Counts the requests this process sends to Redis while active (a command or a whole pipeline).

    Server read events stop matching round trips once a request outgrows the server's 16 KiB read
    buffer (a 100-job pipeline does); counting `send_packed_command` calls on the client does not.
    Only for in-process measurements: it patches redis-py in this process.
    """

    def __init__(self) -> None:
        self.count = 0
        self._original: Any = None

    def __enter__(self) -> ClientRequests:
        from redis.connection import AbstractConnection

        original = self._original = AbstractConnection.send_packed_command
        counter = self

        def counted(conn: Any, command: Any, check_health: bool = True) -> Any:
            counter.count += 1
            return original(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from redis.connection import AbstractConnection

        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]
