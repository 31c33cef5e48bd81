"""`python -m benchmarks [--quick] [--only NAME ...] [--output PATH]`: run the suite, write BENCHMARKS.md.

Starts a private redis-server (never the shared one on 6379), runs each benchmark module's
`run(ctx)` in turn, and writes the report. A benchmark that fails is reported as failed with its
error, and the others still run.
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

from benchmarks import django_setup, environment, report
from benchmarks.harness import Context, Section
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
    return parser.parse_args(argv)


def failed(name: str, error: BaseException) -> Section:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:]
    return Section(
        name, f"{name}: failed in this run", "", extra=["**Failed in this run:**", "", "```text", text, "```"]
    )


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = args.only or [name for name in BENCHMARKS if not (args.quick and name in FULL_ONLY)]
    began = time.monotonic()
    sections: list[Section] = []
    with RedisServer() as server, contextlib.ExitStack() as cleanups:
        cleanups.callback(django_setup.cleanup)
        ctx = Context(server.url, quick=args.quick)
        conn = ctx.connection()
        env = environment.describe(conn)
        conn.close()
        print(f"benchmarks: private redis-server on {server.url} (pid {server.pid}); logs in {ctx.log_dir}")
        for name in names:
            print(f"benchmarks: {name} ...", flush=True)
            started, load_before = time.monotonic(), os.getloadavg()[0]
            try:
                module = importlib.import_module(f"benchmarks.{name}")
                section = module.run(ctx)
            except Exception as error:  # one broken benchmark must not hide the others' figures
                traceback.print_exc()
                section = failed(name, error)
            section.seconds = section.seconds or time.monotonic() - started
            section.extra.append(
                f"\nMachine load (1-minute load average, 2 CPUs) before / after: {load_before:.1f} / "
                f"{os.getloadavg()[0]:.1f}."
            )
            sections.append(section)
            for row in section.rows:
                print(f"  {row.label}: {report.cell(row)} {report.ratio_cell(row)}")
            print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    seconds = time.monotonic() - began
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
