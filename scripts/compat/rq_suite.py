"""Run rq's own worker tests against rq's classes and against ours, and show what we change.

    python scripts/compat/rq_suite.py [--variant NAME ...] [--module test_worker ...] [--rev HEAD] [--keep]

Downloads the sdist of the installed rq from PyPI, unpacks its tests/ (never rq's code: the tests
import the installed rq) and runs the worker-related modules once per variant, in shards side by
side, each shard against its own private redis-server and in its own copy of the tests: `baseline`
with rq's classes, then one variant per class of ours, swapped in where rq's tests import rq's
(see shim/sitecustomize.py). Prints a table per module and every test that passes with rq's class
but fails with ours, rerun once to tell a regression from a flaky test. Exit status 1 if any
regression is confirmed or a shard ended without results.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.support

from scripts.compat.results import Outcome, Run, counts, first_lines, regressions, table, to_pytest_id  # noqa: E402
from scripts.compat.runs import VARIANTS, Shard, run_shard, shards, variant_available  # noqa: E402
from scripts.compat.sources import fetch_sdist, snapshot, unpack_tests  # noqa: E402

#: rq's test modules that run workers, directly, through fixtures or through `rq worker`.
MODULES = (
    "test_worker",
    "test_retry",
    "test_registry",
    "test_commands",
    "test_job_lifecycle",
    "test_timeouts",
    "test_callbacks",
    "test_dependencies",
    "test_job_dependency",
    "test_scheduler",
    "test_worker_registration",
    "test_executions",
    "test_intermediate_queue",
    "test_rate_limit",
    "test_repeat",
    "test_results",
    "test_group",
    "test_webhooks",
    "test_cli",
)
#: Run when no --variant is given: each of our classes (not the canary).
DEFAULT_VARIANTS = ("RetryWorker", "SimpleRetryWorker", "PreforkRetryWorker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="class of ours to check (repeatable; "
        "`baseline` alone: rq's only; `canary`: a deliberately broken worker); default: each of ours",
    )
    add(
        "--module",
        action="append",
        help="rq test module, e.g. test_worker (repeatable); default: the worker ones",
    )
    add("-k", dest="keyword", help="pytest -k expression, for every run")
    add("--rev", help="check worker/ as committed at this git revision instead of the work tree")
    add("--no-slow", dest="slow", action="store_false", help="leave out rq's slow tests (in every run)")
    add(
        "--no-deselect",
        dest="skip_listed",
        action="store_false",
        help="also run the tests deselect.txt lists",
    )
    add("--shards", type=int, default=3, help="pytest processes per variant, side by side (default 3)")
    add("--timeout", type=int, default=90, help="seconds per test (pytest-timeout; default 90)")
    add("--keep", action="store_true", help="keep the temporary directory (kept anyway when ours failed)")
    add("--json", type=Path, help="also write the results here, as JSON")
    return parser.parse_args(argv)


def run_variants(
    args: argparse.Namespace,
    variants: list[str],
    parts: list[Shard],
    sdist: Path,
    workdir: Path,
    source: Path | None,
) -> list[Run]:
    """Every (variant, shard) at once, each in a fresh copy of rq's tests; merged per variant."""
    if args.keyword:
        parts = [Shard((*shard.targets, "-k", args.keyword), shard.deselect) for shard in parts]
    jobs = [(variant, index, shard) for variant in variants for index, shard in enumerate(parts)]

    def one(job: tuple[str, int, Shard]) -> tuple[str, dict[str, Outcome], float, Path, str | None]:
        variant, index, shard = job
        where = workdir / f"{variant}-{index}"
        unpack_tests(sdist, where)
        return variant, *run_shard(
            variant,
            shard,
            where,
            timeout=args.timeout,
            source=source,
            slow=args.slow,
            skip_listed=args.skip_listed,
        )

    runs = {variant: Run(variant) for variant in variants}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for variant, results, seconds, log, problem in pool.map(one, jobs):
            run = runs[variant]
            run.results.update(results)
            run.seconds = max(run.seconds, seconds)
            run.logs.append(log)
            if problem:
                run.problems.append(problem)
                print(f"    {variant}: {problem}", flush=True)
    return [runs[variant] for variant in variants]


DIFFERENCES = Path(__file__).with_name("differences.txt")


def read_known_differences(path: Path = DIFFERENCES) -> frozenset[str]:
    """The pytest ids `differences.txt` lists: failures with ours that are deliberate, with reasons."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


KNOWN_DIFFERENCES = read_known_differences()


def confirm(
    args: argparse.Namespace, run: Run, found: list[str], sdist: Path, workdir: Path, source: Path | None
) -> dict[str, list[str]]:
    """Rerun `found` once with ours and once with rq's classes, side by side, and sort them out.

    "regression": fails with ours again, passes with rq's again. "flaky": passes with ours this time.
    "unstable here": fails with rq's own classes too this time (environment or load).
    """
    verdicts: dict[str, list[str]] = {"regression": [], "flaky": [], "unstable here": []}
    if not found:
        return verdicts
    shard = Shard(tuple(to_pytest_id(nodeid) for nodeid in found))

    def rerun(variant: str) -> dict[str, Outcome]:
        where = workdir / f"{run.variant}-rerun-{variant}"
        unpack_tests(sdist, where)
        results, _, _, _ = run_shard(
            variant, shard, where, timeout=args.timeout, source=source, slow=args.slow, skip_listed=False
        )
        return results

    with ThreadPoolExecutor(max_workers=2) as pool:
        ours, theirs = pool.map(rerun, [run.variant, "baseline"])
    for nodeid in found:
        if ours.get(nodeid, Outcome("fail")).status != "fail":
            verdicts["flaky"].append(nodeid)
        elif theirs.get(nodeid, Outcome("fail")).status == "fail":
            verdicts["unstable here"].append(nodeid)
        else:
            verdicts["regression"].append(nodeid)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version = importlib.metadata.version("rq")
    modules = [module.removesuffix(".py") for module in args.module or MODULES]
    workdir = Path(tempfile.mkdtemp(prefix="rq-compat-"))
    started = time.monotonic()
    try:
        source = snapshot(args.rev, workdir / "src") if args.rev else None
        variants = ["baseline"]
        for name in [v for v in args.variant or DEFAULT_VARIANTS if v != "baseline"]:
            why_not = variant_available(name, source)
            if why_not:
                print(f"==> {name}: skipped, {why_not}")
            else:
                variants.append(name)
        sdist = fetch_sdist(version)
        parts = shards(modules, args.shards)
        ours = f"worker/ at {args.rev}" if args.rev else "worker/ in the work tree"
        slow = "with" if args.slow else "without"
        print(
            f"==> rq {version}'s tests, {len(modules)} modules {slow} its slow tests, {ours}; "
            f"{', '.join(variants)}; {len(parts)} shards each",
            flush=True,
        )
        runs = run_variants(args, variants, parts, sdist, workdir, source)

        print("\n" + table(modules, runs))
        report: dict[str, Any] = {"rq": version, "rev": args.rev, "slow": args.slow, "runs": {}}
        confirmed_total = 0
        any_failure = False  # with ours, even if only flaky: then the logs are worth keeping
        for run in runs[1:]:
            verdicts = confirm(args, run, regressions(runs[0], run), sdist, workdir, source)
            known = KNOWN_DIFFERENCES
            verdicts["known difference"] = [n for n in verdicts["regression"] if to_pytest_id(n) in known]
            confirmed = verdicts["regression"] = [
                n for n in verdicts["regression"] if to_pytest_id(n) not in known
            ]
            confirmed_total += len(confirmed)
            any_failure = any_failure or any(verdicts.values())
            flaky, unstable = len(verdicts["flaky"]), len(verdicts["unstable here"])
            print(
                f"\n==> {run.variant}: {len(confirmed)} regression(s) (failed twice with it, passed twice "
                f"with rq's); {len(verdicts['known difference'])} known difference(s) (differences.txt); "
                f"{flaky} flaky (passed on a rerun); {unstable} unstable here (failed on a rerun with rq's "
                "class too)"
            )
            for nodeid in confirmed:
                print(f"  FAIL {to_pytest_id(nodeid)}\n{first_lines(run.results[nodeid].detail)}")
            for verdict in ("known difference", "flaky", "unstable here"):
                for nodeid in verdicts[verdict]:
                    print(
                        f"  {verdict}: {to_pytest_id(nodeid)}\n{first_lines(run.results[nodeid].detail, 2)}"
                    )
            report["runs"][run.variant] = {
                "regressions": {nodeid: run.results[nodeid].detail for nodeid in confirmed},
                "flaky": verdicts["flaky"],
                "unstable_here": verdicts["unstable here"],
                "known_differences": verdicts["known difference"],
            }
        problems = [(run.variant, problem) for run in runs for problem in run.problems]
        if problems:
            print(f"\n==> {len(problems)} shard(s) ended without results; their tests were not compared:")
            print("\n".join(f"  {variant}: {problem}" for variant, problem in problems))
        baseline_failures = [n for n, o in runs[0].results.items() if o.status == "fail"]
        if baseline_failures:
            print(
                f"\n==> baseline: {len(baseline_failures)} of rq's tests failed with rq's own classes "
                "(environment or load; not counted against ours):"
            )
            print("\n".join(f"  {to_pytest_id(n)}" for n in sorted(baseline_failures)))
        for run in runs:
            report["runs"].setdefault(run.variant, {}).update(
                seconds=round(run.seconds, 1),
                problems=run.problems,
                counts={module: counts(run.results, module) for module in modules},
                results={nodeid: outcome.status for nodeid, outcome in run.results.items()},
            )
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
        args.keep = args.keep or any_failure or bool(problems)
        kept = "" if args.keep else " (removed; --keep keeps them)"
        print(f"\n==> {time.monotonic() - started:.0f}s in all; logs and junit XML in {workdir}{kept}")
        return 1 if confirmed_total or problems else 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
