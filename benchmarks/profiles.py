"""Profiles of the hot paths: enqueue inside `save()`, the worker's loop, `run_receiver`'s decoding.

cProfile in-process, so only this process's main thread is seen (the promoter and heartbeat
threads are not; a forking worker's horse is not). Each table lists the functions with the most
own time (tottime) as a share of the profiled total, with their cumulative share; "round trips" are
the Redis requests this process sent meanwhile (`harness.ClientRequests`). Profiling inflates
Python-heavy code more than I/O, so read the shares, not the absolute times. The raw `.prof`
files are kept in the run's log directory.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from rq import Queue

from benchmarks import django_setup
from benchmarks.enqueueing import enqueue_many
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


def in_process_worker(ctx: Context, worker_path: str, count: int) -> Callable[[], int]:
    from rq.utils import import_attribute

    def work() -> int:
        cls = import_attribute(worker_path)
        conn = ctx.connection()
        worker = cls([Queue("bench", connection=conn)], connection=conn)
        worker.work(burst=True, logging_level="WARNING")
        return count

    return work


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
        enqueue_many(Queue("bench", connection=ctx.connection()), "benchmarks.jobs.noop", count)
        section.extra += profile(
            ctx, f"{worker_path} loop, no-op jobs", in_process_worker(ctx, worker_path, count)
        )
    ctx.flush()
    try:
        receivers.use("async")
        from benchmarks.receiver_throughput import enqueue_through_app

        enqueue_through_app(count)
    finally:
        receivers.use("none")
    section.extra += profile(
        ctx,
        "worker.SimpleRetryWorker loop, run_receiver jobs",
        in_process_worker(ctx, "worker.SimpleRetryWorker", count),
    )
    section.seconds = time.monotonic() - began
    return section
