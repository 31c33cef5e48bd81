"""Run rq's own worker tests against rq's classes and against ours, and show what we change.

    python scripts/compat/rq_suite.py [--variant NAME ...] [--module test_worker ...] [--keep]

Downloads the sdist of the installed rq from PyPI, unpacks its tests/ (never rq's code: the tests
import the installed rq) into a temporary directory and runs the worker-related modules once per
variant, each against its own private redis-server: `baseline` with rq's classes, then one run per
class of ours swapped in where rq's tests import rq's (see shim/sitecustomize.py). Prints a table
per module and every test that passes with rq's class but fails with ours, rerun once to tell a
regression from a flaky test. Exit status 1 if there is any confirmed regression.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.redis_server import RedisServer  # noqa: E402

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim"
DESELECT = HERE / "deselect.txt"
#: Seconds pytest may take to exit once its session is over (its junit report is written).
EXIT_GRACE_SECONDS = 20
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rq-signals-compat"

#: rq's test modules that run workers, directly or through fixtures.
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

#: Variant name -> {rq class name: our class}. `baseline` swaps nothing.
VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {},
    "RetryWorker": {"Worker": "worker.RetryWorker"},
    "SimpleRetryWorker": {"SimpleWorker": "worker.SimpleRetryWorker"},
    "PreforkRetryWorker": {"Worker": "worker.prefork.PreforkRetryWorker"},
    "canary": {"Worker": "rq_compat_canary.CanaryWorker"},  # self-test: must show regressions
}
#: Run when no --variant is given: our classes, not the canary.
DEFAULT_VARIANTS = ("RetryWorker", "SimpleRetryWorker", "PreforkRetryWorker")

PYTEST_INI = """\
[pytest]
markers =
    slow: rq's slow tests
    ssl_test: rq's tests that need a TLS Redis
filterwarnings = ignore::pytest.PytestUnhandledThreadExceptionWarning
"""


@dataclass
class Outcome:
    status: str  # "pass", "fail" or "skip"
    detail: str = ""


@dataclass
class Run:
    variant: str
    seconds: float
    returncode: int
    log: Path
    results: dict[str, Outcome] = field(default_factory=dict)


# -- getting rq's tests --------------------------------------------------------------------------


def fetch_sdist(version: str) -> Path:
    """rq's sdist for `version`, from the cache or PyPI (`pip download`, hash-checked by pip)."""
    cached = CACHE / f"rq-{version}.tar.gz"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rq-compat-dl-") as download:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"rq=={version}",
            "-d",
            download,
        ]
        subprocess.run(command, check=True, timeout=300)
        (found,) = Path(download).glob("rq-*.tar.gz")
        shutil.move(str(found), cached)
    return cached


def unpack_tests(sdist: Path, into: Path) -> None:
    """Only `tests/` of the sdist goes to `into/tests`: rq's tests must import the installed rq."""
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            top, _, rest = member.name.partition("/")
            if rest == "tests" or rest.startswith("tests/"):
                member.name = rest
                members.append(member)
        if not members:
            raise SystemExit(f"{sdist.name} has no tests/ directory; cannot check compatibility")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(into, members=members, **kwargs)
    (into / "pytest.ini").write_text(PYTEST_INI)


# -- running them --------------------------------------------------------------------------------


def child_env(swap: dict[str, str], source: Path | None) -> dict[str, str]:
    """Environment of every process of a run: shim (and a snapshot of our code) first on the path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "RUN_SLOW_TESTS_TOO",
            "RUN_SSL_TESTS",
            "PYTEST_ADDOPTS",
            "DJANGO_SETTINGS_MODULE",
            "PYTHONPATH",
        }
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (SHIM, source) if p is not None)
    env["RQ_COMPAT_SWAP"] = ",".join(f"{name}={dotted}" for name, dotted in swap.items())
    env["RQ_COMPAT_DESELECT"] = str(DESELECT)
    return env


def variant_available(swap: dict[str, str], source: Path | None) -> str | None:
    """None if every class of `swap` imports (from `source` if given), else why not."""
    env = child_env({}, source)
    for dotted in swap.values():
        module_name, _, attr = dotted.rpartition(".")
        probe = f"import importlib; getattr(importlib.import_module({module_name!r}), {attr!r})"
        check = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or ["?"])[-1]
            return f"{dotted} not importable ({last})"
    return None


def snapshot(rev: str, into: Path) -> Path:
    """Our `worker` package as committed at `rev`, unpacked under `into` (other engineers edit the tree)."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "worker"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into


def run_pytest(
    variant: str,
    workdir: Path,
    targets: list[str],
    *,
    timeout: int,
    label: str,
    source: Path | None,
    slow: bool = False,
) -> Run:
    """One pytest run of `targets` under `variant`, against a redis-server of its own."""
    junit = workdir / f"junit-{label}.xml"
    log = workdir / f"log-{label}.txt"
    env = child_env(VARIANTS[variant], source)
    if slow:
        env["RUN_SLOW_TESTS_TOO"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "rq_compat_plugin",
        "-p",
        "no:randomly",
        "-p",
        "no:django",
        "-p",
        "no:cacheprovider",
        "-m",
        "not ssl_test" if slow else "not slow and not ssl_test",
        f"--timeout={timeout}",
        "-q",
        "-rN",
        f"--junitxml={junit}",
        *targets,
    ]
    with RedisServer() as redis, log.open("w") as out:
        env["RQ_COMPAT_REDIS_PORT"] = str(redis.port)
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        returncode = wait_for_pytest(process, junit, deadline=started + timeout * 10, log=out)
        seconds = time.monotonic() - started
    run = Run(variant, seconds, returncode, log)
    if junit.is_file():
        run.results = parse_junit(junit)
    elif process.returncode != 0:
        raise SystemExit(
            f"pytest ({label}) failed before running any test; see {log}:\n{log.read_text()[-3000:]}"
        )
    return run


def wait_for_pytest(process: subprocess.Popen[bytes], junit: Path, *, deadline: float, log: IO[str]) -> int:
    """pytest's exit status; its process group is killed if it outlives `deadline` or hangs at exit.

    Some rq tests leave a forked process behind that multiprocessing then waits for at exit, forever:
    once the junit report is written (the session is over) pytest gets EXIT_GRACE_SECONDS to go.
    """
    finished_at: float | None = None
    while process.poll() is None:
        now = time.monotonic()
        if finished_at is None and junit.is_file():
            finished_at = now
        overdue = now > deadline or (finished_at is not None and now > finished_at + EXIT_GRACE_SECONDS)
        if overdue:
            why = "hung after the session ended" if finished_at is not None else "ran past its deadline"
            log.write(f"\nrq compat: pytest {why}; killing its process group {process.pid}\n")
            log.flush()
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            return 0 if finished_at is not None and not junit_failed(junit) else 1
        time.sleep(0.2)
    return process.returncode


def junit_failed(junit: Path) -> bool:
    return any(o.status == "fail" for o in parse_junit(junit).values())


def parse_junit(path: Path) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = f"{case.get('classname')}::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            results[nodeid] = Outcome("fail", text.strip())
        elif case.find("skipped") is not None:
            results[nodeid] = Outcome("skip", case.find("skipped").get("message", ""))  # type: ignore[union-attr]
        else:
            results.setdefault(nodeid, Outcome("pass"))
    return results


def module_of(nodeid: str) -> str:
    # "tests.test_worker.TestWorker::test_x" -> "test_worker"
    parts = nodeid.split("::", 1)[0].split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def to_pytest_id(nodeid: str) -> str:
    """junit "tests.test_worker.TestWorker::test_x" -> pytest "tests/test_worker.py::TestWorker::test_x"."""
    dotted, name = nodeid.split("::", 1)
    parts = dotted.split(".")
    return "/".join(parts[:2]) + ".py::" + "::".join([*parts[2:], name])


# -- reporting -----------------------------------------------------------------------------------


def counts(results: dict[str, Outcome], module: str) -> str:
    statuses = [o.status for nodeid, o in results.items() if module_of(nodeid) == module]
    return f"{statuses.count('pass')}/{statuses.count('fail')}/{statuses.count('skip')}"


def regressions(baseline: Run, ours: Run) -> list[str]:
    return sorted(
        nodeid
        for nodeid, outcome in baseline.results.items()
        if outcome.status == "pass" and ours.results.get(nodeid, Outcome("fail", "not run")).status == "fail"
    )


def first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ") and line[1:].strip() != lines[0].strip()]
    chosen = (lines[:1] + errors[: count - 1]) if errors else lines[:count]
    return "\n".join("      " + line[:160] for line in chosen)


def print_table(modules: list[str], runs: list[Run]) -> str:
    header = ["module", *(f"{run.variant} p/f/s" for run in runs)]
    rows = [[module, *(counts(run.results, module) for run in runs)] for module in modules]
    rows.append(
        [
            "total",
            *(
                f"{sum(o.status == 'pass' for o in run.results.values())}/"
                f"{sum(o.status == 'fail' for o in run.results.values())}/"
                f"{sum(o.status == 'skip' for o in run.results.values())}"
                for run in runs
            ),
        ]
    )
    rows.append(["seconds", *(f"{run.seconds:.0f}" for run in runs)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="our class to check (repeatable; `baseline` alone runs rq's classes only); "
        "default: each of ours that imports (canary: a deliberately broken worker, self-test)",
    )
    parser.add_argument("--module", action="append", help="rq test module, e.g. test_worker (repeatable)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, applied to every run")
    parser.add_argument(
        "--rev", help="check our worker/ as committed at this git revision, not the work tree"
    )
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test (pytest-timeout)")
    parser.add_argument("--serial", action="store_true", help="one run at a time (default: all at once)")
    parser.add_argument("--slow", action="store_true", help="also run rq's slow tests (in every run)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, junit xml)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    version = importlib.metadata.version("rq")
    modules = [m.removesuffix(".py") for m in args.module or MODULES]
    workdir = Path(tempfile.mkdtemp(prefix="rq-compat-"))
    started = time.monotonic()
    try:
        source = snapshot(args.rev, workdir / "src") if args.rev else None
        variants = ["baseline"]
        for name in [v for v in args.variant or DEFAULT_VARIANTS if v != "baseline"]:
            why_not = variant_available(VARIANTS[name], source)
            if why_not:
                print(f"==> {name}: skipped, {why_not}")
            else:
                variants.append(name)
        unpack_tests(fetch_sdist(version), workdir)
        targets = [f"tests/{module}.py" for module in modules]
        missing = [t for t in targets if not (workdir / t).is_file()]
        if missing:
            raise SystemExit(f"rq {version}'s sdist has no {', '.join(missing)}")
        if args.keyword:
            targets += ["-k", args.keyword]
        ours = f"worker/ at {args.rev}" if args.rev else "worker/ as in the work tree"
        print(
            f"==> rq {version}'s tests ({len(modules)} modules), {ours}; runs: {', '.join(variants)}",
            flush=True,
        )

        def one(variant: str) -> Run:
            run = run_pytest(
                variant, workdir, targets, timeout=args.timeout, label=variant, source=source, slow=args.slow
            )
            print(f"    {variant}: {run.seconds:.0f}s, pytest exit {run.returncode}", flush=True)
            return run

        with ThreadPoolExecutor(max_workers=1 if args.serial else len(variants)) as pool:
            runs = list(pool.map(one, variants))

        print()
        print(print_table(modules, runs))
        confirmed_total = 0
        report: dict[str, Any] = {"rq": version, "rev": args.rev, "modules": modules, "runs": {}}
        for run in runs[1:]:
            found = regressions(runs[0], run)
            confirmed, flaky = found, []
            if found:
                rerun = run_pytest(
                    run.variant,
                    workdir,
                    [to_pytest_id(n) for n in found],
                    timeout=args.timeout,
                    label=f"{run.variant}-rerun",
                    source=source,
                    slow=args.slow,
                )
                confirmed = [n for n in found if rerun.results.get(n, Outcome("fail")).status == "fail"]
                flaky = [n for n in found if n not in confirmed]
            confirmed_total += len(confirmed)
            print(
                f"\n==> {run.variant}: {len(confirmed)} regression(s), {len(flaky)} flaky "
                "(failed with ours, passed on a rerun)"
            )
            for nodeid in confirmed:
                print(f"  FAIL {to_pytest_id(nodeid)}\n{first_lines(run.results[nodeid].detail)}")
            for nodeid in flaky:
                print(f"  flaky {to_pytest_id(nodeid)}")
            report["runs"][run.variant] = {
                "regressions": {n: run.results[n].detail for n in confirmed},
                "flaky": flaky,
            }
        for run in runs:
            report["runs"].setdefault(run.variant, {}).update(
                seconds=round(run.seconds, 1),
                counts={m: counts(run.results, m) for m in modules},
                results={n: o.status for n, o in run.results.items()},
            )
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
        print(
            f"\n==> {time.monotonic() - started:.0f}s in all; rq's tests and logs in {workdir}"
            + ("" if args.keep else " (removed; --keep keeps them)")
        )
        return 1 if confirmed_total else 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
