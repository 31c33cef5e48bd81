"""`python -m benchmarks [--quick] [--only NAME ...] [--output PATH]`: run the suite, write BENCHMARKS.md.

Starts a private redis-server (never the shared one on 6379), runs each benchmark module's
`run(ctx)` in turn, and writes the report. A benchmark that fails is reported as failed with its
error, and the others still run. The request-overhead and transaction benchmarks run a second time
against PostgreSQL when there is one on loopback (`benchmarks/postgres.py`: a subprocess of this
command with `--sections-json`), and their PostgreSQL sections follow the SQLite ones.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import django_setup, environment, postgres, report
from benchmarks.harness import Context, Section, dump_sections
from tests.support.redis_server import RedisServer

#: Module names under `benchmarks`, in report order.
BENCHMARKS = (
    "request_overhead",
    "transaction",
    "throughput",
    "receiver_throughput",
    "latency",
    "retry_lateness",
    "memory",
    "health",
    "profiles",
)
#: Run only when asked for by name (or in full mode).
FULL_ONLY = ("profiles",)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Hand-written conclusions from the profiles, copied into the report.
FINDINGS = Path(__file__).with_name("findings.md")

PEERS = """## Peers, for context (measured earlier on this machine, not by this suite)

rq.Worker 27 jobs/s, rq.SimpleWorker 195 jobs/s, rq about 20 round trips and 57 commands per job;
rq `Queue.enqueue` 526 µs per job. These are from a different (busier) moment on the same shared
machine: compare with the baselines above, which were measured in the same run as our figures.
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 2 minutes (for CI)")
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "BENCHMARKS.md",
        help="where to write the report (default: BENCHMARKS.md at the repository root)",
    )
    parser.add_argument(
        "--sections-json",
        type=Path,
        metavar="PATH",
        help="write the sections as JSON instead of the report (how the PostgreSQL pass hands them back)",
    )
    return parser.parse_args(argv)


def failed(name: str, error: BaseException) -> Section:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:]
    return Section(
        name, f"{name}: failed in this run", "", extra=["**Failed in this run:**", "", "```text", text, "```"]
    )


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = args.only or [name for name in BENCHMARKS if not (args.quick and name in FULL_ONLY)]
    on_postgres = [] if postgres.is_pass() else [name for name in postgres.BENCHMARKS if name in names]
    began = time.monotonic()
    sections: list[Section] = []
    with RedisServer() as server, contextlib.ExitStack() as cleanups:
        cleanups.callback(django_setup.cleanup)
        ctx = Context(server.url, quick=args.quick)
        conn = ctx.connection()
        env = environment.describe(conn)
        conn.close()
        database = find_postgres(env) if on_postgres else None
        print(f"benchmarks: private redis-server on {server.url} (pid {server.pid}); logs in {ctx.log_dir}")
        for name in names:
            sections.append(run_one(name, ctx))
            if on_postgres and name == on_postgres[-1]:
                sections = beside(sections, postgres_sections(database, on_postgres, quick=args.quick))
    seconds = time.monotonic() - began
    if args.sections_json:
        args.sections_json.write_text(dump_sections(sections))
        print(f"benchmarks: wrote the sections to {args.sections_json} in {seconds:.0f} s")
        return 0
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    report.write(
        args.output,
        sections=sections,
        environment=env,
        quick=args.quick,
        seconds=seconds,
        appendix=[findings, PEERS],
    )
    print(f"benchmarks: wrote {args.output} in {seconds:.0f} s")
    return 0


def run_one(name: str, ctx: Context) -> Section:
    """Run one benchmark module, print its rows; in the PostgreSQL pass, label them with the database."""
    print(f"benchmarks: {name} ...", flush=True)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        section: Section = module.run(ctx)
        if postgres.is_pass():
            section.method = postgres.method()
    except Exception as error:  # one broken benchmark must not hide the others' figures
        traceback.print_exc()
        section = failed(name, error)
    if postgres.is_pass():
        postgres.relabel(section)
    section.seconds = section.seconds or time.monotonic() - started
    section.extra.append(
        f"\nMachine load (1-minute load average, 2 CPUs) before / after: {load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f}."
    )
    for row in section.rows:
        print(f"  {row.label}: {report.cell(row)} {report.ratio_cell(row)}")
    print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    return section


def find_postgres(env: dict[str, str]) -> postgres.Server | str:
    """The PostgreSQL for the second pass, its facts added to `env`; or why there is none."""
    try:
        database = postgres.find()
    except postgres.Unavailable as error:
        env["PostgreSQL"] = f"not used: {error}"
        print(f"benchmarks: PostgreSQL pass skipped: {error}", flush=True)
        return str(error)
    env.update(database.describe())
    print(f"benchmarks: PostgreSQL pass on {postgres.display(database.url)}", flush=True)
    return database


def postgres_sections(
    database: postgres.Server | str | None, names: list[str], *, quick: bool
) -> list[Section]:
    """The PostgreSQL pass's sections, or the one-line note saying why there are none."""
    if not isinstance(database, postgres.Server):
        return [postgres.skipped(database or "no PostgreSQL")]
    print(f"benchmarks: PostgreSQL pass: {', '.join(names)} in a subprocess ...", flush=True)
    try:
        return postgres.run(database, names, quick=quick)
    except Exception as error:  # the SQLite figures stand; say why the PostgreSQL ones are missing
        traceback.print_exc()
        return [failed("postgresql", error)]


def beside(sections: list[Section], added: list[Section]) -> list[Section]:
    """`sections` with each PostgreSQL section right after its SQLite one (others at the end)."""
    result = list(sections)
    for section in added:
        names = [each.name for each in result]
        sqlite = section.name.removesuffix(postgres.SUFFIX)
        result.insert(names.index(sqlite) + 1 if sqlite in names else len(result), section)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
