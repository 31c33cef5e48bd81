"""Profiles of the hot paths: enqueue inside `save()`, the worker's loop, `run_receiver`'s decoding.

cProfile in-process, so only this process's main thread is seen (the promoter and heartbeat
threads are not; a forking worker's horse is not). Each table lists the functions with the most
own time (tottime) as a share of the profiled total, with their cumulative share; "round trips" are
the Redis requests this process sent meanwhile (`harness.ClientRequests`). Profiling inflates
Python-heavy code more than I/O, so read the shares, not the absolute times. The raw `.prof`
files are kept in the run's log directory.

The worker loops run in this (Django) process, where the app installs its job gate for every worker
built here. The no-op loops are the worker's own cost, compared with `rq.SimpleWorker` as in the
throughput benchmark, so they run as `rq worker` runs them there: the gate uninstalled for the
loop, the jobs pickled by a plain `rq.Queue`. The `run_receiver` loop runs as a Django-run worker
does: behind the app's gate, its JSON jobs written by the app. After each loop every job must have
finished, or the benchmark fails.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rq import Queue

from benchmarks import django_setup
from benchmarks.enqueueing import enqueue_many, verify_finished
from benchmarks.harness import ClientRequests, Context, Section

NAME = "profiles"
TITLE = "Profiles of the hot paths"
TOP = 12


def profile(ctx: Context, name: str, work: Callable[[], int]) -> list[str]:
    """Profile `work()` (which returns how many units it did); a markdown table of the top functions."""
    profiler = cProfile.Profile()
    with ClientRequests() as requests:
        began = time.perf_counter()
        profiler.enable()
        units = work()
        profiler.disable()
        seconds = time.perf_counter() - began
    path = Path(ctx.log_dir) / f"{name}.prof"
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler)
    total = stats.total_tt or 1e-9  # type: ignore[attr-defined]  # pstats keeps it undocumented
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:TOP]  # type: ignore[attr-defined]
    lines = [
        f"**{name}**: {units} units in {seconds:.2f} s profiled ({seconds / units * 1e3:.2f} ms per unit), "
        f"{requests.count / units:.2f} Redis round trips per unit.",
        "",
        "| function | own time % | cumulative % | calls per unit |",
        "|---|---|---|---|",
    ]
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in rows:
        where = short_path(filename)
        lines.append(
            f"| `{func}` ({where}:{line}) | {tottime / total * 100:.1f} | {cumtime / total * 100:.1f} "
            f"| {ncalls / units:.1f} |"
        )
    lines.append("")
    lines.append(f"Cumulative share of selected functions in **{name}**:")
    lines.append("")
    for (filename, line, func), (_, _, _, cumtime, _) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: -item[1][3],
    ):
        if interesting(filename) and cumtime / total > 0.03:
            lines.append(f"- `{func}` ({short_path(filename)}:{line}): {cumtime / total * 100:.0f}%")
    lines.append("")
    return lines


def short_path(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def interesting(filename: str) -> bool:
    return any(part in filename for part in ("/rq_signals/", "/worker/", "/django/db/models/", "/rq/"))


def creates(count: int) -> Callable[[], int]:
    def work() -> int:
        from tests.testapp.models import Order

        for index in range(count):
            Order.objects.create(reference=f"prof-{index}", total="1.00")
        return count

    return work


def transactions(count: int, size: int) -> Callable[[], int]:
    def work() -> int:
        from benchmarks.transaction import time_transaction

        for _ in range(count):
            time_transaction(size)
        return count * size

    return work


def worker_loop(ctx: Context, name: str, worker_path: str, ids: list[str]) -> list[str]:
    """Profile a burst run of `worker_path` in this process over the queue holding jobs `ids`; then
    (outside the profile) check that every one of them finished."""
    from rq.utils import import_attribute

    conn = ctx.connection()
    built: list[Any] = []

    def work() -> int:
        worker = import_attribute(worker_path)([Queue("bench", connection=conn)], connection=conn)
        built.append(worker)
        worker.work(burst=True, logging_level="WARNING")
        return len(ids)

    lines = profile(ctx, name, work)
    # The worker's own queue: behind a gate its serializer is the gate's, else rq's default.
    verify_finished(built[0].queues[0], ids, f"{worker_path} in-process loop")
    conn.close()
    return lines


@contextlib.contextmanager
def without_job_gate() -> Iterator[None]:
    """No job gate for the workers built inside, as under `rq worker` (restored after)."""
    from worker.gate.gate import install_job_gate

    previous = install_job_gate(None)
    try:
        yield
    finally:
        install_job_gate(previous)


def run(ctx: Context) -> Section:
    began = time.monotonic()
    section = Section(NAME, TITLE, __doc__ or "")
    count = ctx.pick(200, 1000)
    django_setup.setup(ctx)
    from benchmarks import receivers

    try:
        receivers.use("async")
        creates(20)()
        ctx.flush()
        section.extra += profile(ctx, "save() with one @async_receiver", creates(count))
        ctx.flush()
        section.extra += profile(
            ctx, "signals in transactions of 100 (unit: one signal)", transactions(max(2, count // 100), 100)
        )
    finally:
        receivers.use("none")
    for worker_path in ("rq.SimpleWorker", "worker.SimpleRetryWorker"):
        ctx.flush()
        conn = ctx.connection()
        ids = enqueue_many(Queue("bench", connection=conn), "benchmarks.jobs.noop", count)
        conn.close()
        with without_job_gate():
            section.extra += worker_loop(ctx, f"{worker_path} loop, no-op jobs", worker_path, ids)
    ctx.flush()
    try:
        receivers.use("async")
        from benchmarks.receiver_throughput import enqueue_through_app

        ids = enqueue_through_app(count)
    finally:
        receivers.use("none")
    section.extra += worker_loop(
        ctx, "worker.SimpleRetryWorker loop, run_receiver jobs", "worker.SimpleRetryWorker", ids
    )
    section.seconds = time.monotonic() - began
    return section
