"""The health probe's wall time: `python -m rq_signals.health` against `manage.py rqsignals health`.

A liveness probe starts a process every few seconds, so what counts is the whole run: the
interpreter, the imports, reading the settings, the Redis round trips, exit. Both entry points run
as subprocesses of the example shop (`example_project/`, its real settings and apps: the admin,
django-rq, the shop), in its folder as Kubernetes would run them, against the private redis-server
with one `worker.RetryWorker` serving the shop's queues (high, default, low), so every run answers
"healthy" (exit 0, checked). The two entry points alternate, run after run, so machine load
falls on both alike; the figure is the wall time of one run from `Popen` to exit, median
[min–max] over the runs, and the ratio is run by run (probe / command).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import workers
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import summarize
from tests.support.processes import python_env

NAME = "health"
TITLE = "Health probe wall time per run (example shop, one live worker)"
PROJECT = Path(__file__).resolve().parents[1] / "example_project"
QUEUES = ("high", "default", "low")
GOAL_SECONDS = 0.200
#: The two entry points, as a probe's `command:` would list them after the interpreter.
COMMANDS = {
    "python -m rq_signals.health": ["-m", "rq_signals.health"],
    "manage.py rqsignals health": ["manage.py", "rqsignals", "health"],
}


def timed_run(args: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one probe run; it must answer healthy."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0 or not done.stdout.strip().endswith(": ok"):
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    return seconds


def run(ctx: Context) -> Section:
    runs = ctx.pick(10, 20)
    ctx.flush()
    var_dir = tempfile.mkdtemp(prefix="rq-signals-bench-shop-")
    env = python_env(
        {"DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": ctx.redis_url, "SHOP_VAR_DIR": var_dir}
    )
    conn = ctx.connection()
    worker = workers.start(ctx.redis_url, workers.RETRY, QUEUES, log_dir=ctx.log_dir)
    try:
        workers.wait_idle(conn, worker)
        for args in COMMANDS.values():  # warm: compiled bytecode and the page cache, as on a running pod
            timed_run(args, env)
        seconds: dict[str, list[float]] = {label: [] for label in COMMANDS}
        for _ in range(runs):
            for label, args in COMMANDS.items():
                seconds[label].append(timed_run(args, env))
    finally:
        worker.stop()
        conn.close()
    section = Section(NAME, TITLE, __doc__ or "")
    probe, command = (seconds[label] for label in COMMANDS)
    row = Row("python -m rq_signals.health", summarize(probe), "ms", digits=0, scale=1e3)
    row.ratio = summarize([a / b for a, b in zip(probe, command, strict=True)])
    row.ratio_to = "manage.py rqsignals health"
    row.goal = f"< {GOAL_SECONDS * 1e3:.0f} ms every run"
    row.met = max(probe) < GOAL_SECONDS
    section.rows += [row, Row("manage.py rqsignals health", summarize(command), "ms", digits=0, scale=1e3)]
    section.extra.append(f"{runs} runs of each, alternating, after one warm-up run of each.")
    return section
