"""Running rq's tests: the classes each variant swaps in, shards, one pytest per shard with its Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scripts.compat.results import Outcome, parse_junit
from tests.support.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim"
DESELECT = HERE / "deselect.txt"

#: Variant name -> {rq class name: our class}. `baseline` swaps nothing.
VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {},
    "RetryWorker": {"Worker": "worker.RetryWorker"},
    "SimpleRetryWorker": {"SimpleWorker": "worker.SimpleRetryWorker"},
    "PreforkRetryWorker": {"Worker": "worker.PreforkRetryWorker"},
    "canary": {"Worker": "rq_compat_canary.CanaryWorker"},  # self-test: must show regressions
}

#: Seconds a unit of rq 3.0's tests takes (slow tests included), to balance shards; 5 if unlisted.
WEIGHTS = {
    "tests/test_worker.py::TestWorker": 80.0,
    "tests/test_worker.py": 25.0,  # the rest of it
    "tests/test_cli.py": 45.0,
    "tests/test_scheduler.py": 12.0,
    "tests/test_job_dependency.py": 11.0,
    "tests/test_group.py": 8.0,
}
#: Classes run apart from the rest of their module, so that shards come out even.
SPLIT = {"test_worker": ("TestWorker",)}

#: Seconds pytest may take to exit once its session is over (its junit report is written).
EXIT_GRACE_SECONDS = 20


@dataclass(frozen=True)
class Shard:
    targets: tuple[str, ...]
    deselect: tuple[str, ...] = ()


def shards(modules: list[str], count: int) -> list[Shard]:
    """`modules` in `count` groups of about equal running time (greedy, heaviest first)."""
    units: list[tuple[str, tuple[str, ...]]] = []
    for module in modules:
        apart = tuple(f"tests/{module}.py::{name}" for name in SPLIT.get(module, ()))
        units += [(target, ()) for target in apart]
        units.append((f"tests/{module}.py", apart))
    units.sort(key=lambda unit: -WEIGHTS.get(unit[0], 5.0))
    groups: list[list[tuple[str, tuple[str, ...]]]] = [[] for _ in range(max(1, count))]
    for unit in units:
        min(groups, key=lambda group: sum(WEIGHTS.get(target, 5.0) for target, _ in group)).append(unit)
    result = []
    for group in filter(None, groups):
        targets = {target for target, _ in group}
        # A class split off its module, back in the same shard: run the module whole.
        kept = tuple(t for t in targets if "::" not in t or t.split("::")[0] not in targets)
        deselect = tuple(d for _, ds in group for d in ds if d not in targets)
        result.append(Shard(tuple(sorted(kept)), deselect))
    return result


def child_env(
    swap: dict[str, str], source: Path | None, *, slow: bool = False, skip_listed: bool = True
) -> dict[str, str]:
    """Environment of every process of a run: our shim (and a snapshot of our code) first on the path."""
    dropped = {
        "RUN_SLOW_TESTS_TOO",
        "RUN_SSL_TESTS",
        "PYTEST_ADDOPTS",
        "DJANGO_SETTINGS_MODULE",
        "PYTHONPATH",
    }
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in (SHIM, source) if path is not None)
    env["RQ_COMPAT_SWAP"] = ",".join(f"{name}={dotted}" for name, dotted in swap.items())
    if skip_listed:
        env["RQ_COMPAT_DESELECT"] = str(DESELECT)
    if slow:
        env["RUN_SLOW_TESTS_TOO"] = "1"
    return env


def variant_available(variant: str, source: Path | None) -> str | None:
    """None if every class `variant` swaps in imports (from `source` if given), else why not."""
    for dotted in VARIANTS[variant].values():
        module_name, _, attr = dotted.rpartition(".")
        probe = f"import importlib; getattr(importlib.import_module({module_name!r}), {attr!r})"
        check = subprocess.run(
            [sys.executable, "-c", probe],
            env=child_env({}, source),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or ["?"])[-1]
            return f"{dotted} does not import ({last})"
    return None


def run_shard(
    variant: str,
    shard: Shard,
    workdir: Path,
    *,
    timeout: int,
    source: Path | None,
    slow: bool,
    skip_listed: bool = True,
) -> tuple[dict[str, Outcome], float, Path, str | None]:
    """pytest over `shard` in `workdir` (rq's tests unpacked there) against a redis-server of its own.

    pytest leads a process group of its own: some rq tests race to `killpg` a child's group and, when
    they lose, signal their own; that ends this shard (reported as a problem), never the runner.
    Returns (results, seconds, log, problem).
    """
    junit, log = workdir / "junit.xml", workdir / "pytest.log"
    marks = "not ssl_test" if slow else "not slow and not ssl_test"
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
    ]
    command += [
        "-p",
        "no:cacheprovider",
        "-m",
        marks,
        f"--timeout={timeout}",
        "-v",
        "-rN",
        f"--junitxml={junit}",
    ]
    command += [f"--deselect={nodeid}" for nodeid in shard.deselect]
    command += shard.targets
    env = child_env(VARIANTS[variant], source, slow=slow, skip_listed=skip_listed)
    with RedisServer() as redis, log.open("w") as out:
        env["RQ_COMPAT_REDIS_PORT"] = str(redis.port)
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for_pytest(process, junit, deadline=started + timeout * 10, log=out)
        seconds = time.monotonic() - started
    if not junit.is_file():
        return {}, seconds, log, ended_without_report(process.returncode, log)
    return parse_junit(junit), seconds, log, None


def ended_without_report(returncode: int | None, log: Path) -> str:
    """Why a shard has no results: how pytest ended and the test it was in (pytest runs with -v)."""
    how = f"killed by signal {-returncode}" if returncode and returncode < 0 else f"exit status {returncode}"
    started = [line.split(" ", 1)[0] for line in log.read_text().splitlines() if "::" in line]
    during = f", during {started[-1]}" if started else ""
    return f"pytest ended without a report ({how}{during}); see {log}"


def wait_for_pytest(process: subprocess.Popen[bytes], junit: Path, *, deadline: float, log: IO[str]) -> None:
    """Wait for pytest; kill its process group if it outlives `deadline` or hangs on at exit.

    Some rq tests leave a forked process behind that multiprocessing then waits for at exit, forever:
    once the junit report is written (the session is over) pytest gets EXIT_GRACE_SECONDS to go.
    """
    finished_at: float | None = None
    while process.poll() is None:
        now = time.monotonic()
        if finished_at is None and junit.is_file():
            finished_at = now
        if now > deadline or (finished_at is not None and now > finished_at + EXIT_GRACE_SECONDS):
            why = "hung on after its session ended" if finished_at is not None else "ran past its deadline"
            log.write(f"\nrq compat: pytest {why}; killing its process group {process.pid}\n")
            log.flush()
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            return
        time.sleep(0.2)
