"""Request overhead: what one `@async_receiver` adds to `Order.objects.create()` in the web process.

In-process, Django with SQLite (a file in a temp dir) and the private Redis. Variants, all on the
same model and measured in the same run, interleaved (the order rotates every repeat):

- **none**: no receiver on `Order`'s post_save;
- **async**: our `@async_receiver(post_save, sender=Order, queue=..., retry=Backoff(...))` with the
  default `RQ_SIGNALS["FLUSH"] = "commit"` (encodes the payload, enqueues after commit:
  `Order.objects.create()` in autocommit has no transaction to wait for, so the job goes to Redis
  before `create()` returns);
- **background**: the same receiver with `RQ_SIGNALS["FLUSH"] = "background"`: `create()` encodes
  the payload and hands the job to the process's writer thread, which writes it to Redis after;
- **sync 20 ms**: a plain receiver doing 20 ms of (I/O-like, sleeping) work in the request;
- **hand-written**: a plain receiver that calls `transaction.on_commit(lambda: queue.enqueue(...))` on
  a queue built once;
- **hand-written, django_rq.get_queue() per call**: the same, as django-rq's README writes it.

Every variant that enqueues writes JSON jobs: ours and the hand-written one on the queue built once
(`rq_signals.queues.get_queue`, `worker.serializers.JSONSerializer`), the per-call one through the
`SERIALIZER` of `RQ_QUEUES` in `benchmarks/django_settings.py` (the same serializer, as the README's
quickstart sets it). No job is run here, so the job gate plays no part.

Two loops. **Tight**: creates back to back; each repeat times every `create()` on its own and keeps
the median; figures are the median over repeats with the spread of the per-repeat medians, and
ratios are taken within each repeat. A tight loop is CPU-bound, and in background mode the writer
thread competes with it for the GIL and the CPU, so for this loop the notes also give the wall time
per create including the wait for the writer at the end of the loop (`rq_signals.flush_jobs()`) and
the process's CPU time per create (all threads). **Paced**: one create every `PACE_SECONDS`, as a
web process serving requests below its capacity; each repeat keeps the median and the p99 of the
per-create latency. The "≤ 1.10× no receiver" goal of background mode is judged on the paced
median: the latency a request sees while the process is not saturated. The tight loop shows what
the writer costs when it is (commit mode keeps its goal row on the tight loop, as before).

The commit→Redis window, and the writer's CPU, from separate instrumented passes (wrappers around
`flusher.submit` and `jobwriter.write_group`, outside the timed loops): per job, from the moment the
committed job is handed to the writer (background) or its write starts inside `create()`
(commit) to the moment Redis acknowledged the write (one request), p50 and p99, paced and tight. A process
killed hard in that window loses the job (unless `OUTBOX = "always"`). The writer's CPU is its
thread's own CPU time (`/proc/self/task/<tid>/schedstat`) over those passes, per job written.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import django_setup
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import Summary, percentile, summarize

NAME = "request_overhead"
TITLE = "Request overhead: Order.objects.create() with one receiver"
VARIANTS = {
    "none": "no receiver",
    "async": "@async_receiver",
    "background": '@async_receiver, FLUSH="background"',
    "handwritten": "hand-written on_commit + queue.enqueue",
    "handwritten_naive": "hand-written, django_rq.get_queue() per call",
    "sync": "sync receiver, 20 ms of work",
}
PACED = ("none", "async", "background", "handwritten")
#: Seconds between the starts of two creates in the paced loop (250 creates/s).
PACE_SECONDS = 0.004


@dataclass
class Loop:
    """One variant's figures in one repeat of the tight loop (seconds)."""

    median: float
    wall: float  # the loop's wall time per create, the wait for the writer included
    cpu: float  # the process's CPU time per create, every thread included


def time_creates(count: int, *, pace: float = 0.0) -> list[float]:
    """Seconds of each of `count` `Order.objects.create()` calls, one every `pace` seconds if set."""
    from tests.testapp.models import Order

    durations = []
    next_start = time.perf_counter()
    for index in range(count):
        began = time.perf_counter()
        Order.objects.create(reference=f"bench-{index}", total="12.50")
        durations.append(time.perf_counter() - began)
        if pace:
            next_start += pace
            time.sleep(max(0.0, next_start - time.perf_counter()))
    return durations


def variant(name: str) -> contextlib.AbstractContextManager[None]:
    """Exactly `name`'s receiver on `Order` (see `benchmarks.receivers.variant`)."""
    from benchmarks import receivers

    return receivers.variant(name)


def tight(name: str, count: int) -> Loop:
    from rq_signals import flush_jobs

    with variant(name):
        cpu, began = time.process_time(), time.perf_counter()
        durations = time_creates(count)
        if not flush_jobs(timeout=60):
            raise RuntimeError("the writer thread did not finish within 60 s")
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return Loop(sorted(durations)[len(durations) // 2], wall / count, cpu / count)


def paced(name: str, count: int) -> list[float]:
    from rq_signals import flush_jobs

    with variant(name):
        durations = time_creates(count, pace=PACE_SECONDS)
        flush_jobs(timeout=60)
    return durations


@dataclass
class Window:
    """Per job, seconds from commit (handed over, or write started) to Redis's reply; writer CPU."""

    seconds: list[float] = field(default_factory=list)
    writes: int = 0
    writer_cpu: float = 0.0  # seconds of the writer thread's CPU over the pass


def window(name: str, count: int, *, pace: float) -> Window:
    """An instrumented pass of `count` creates: each job's commit→Redis window."""
    from rq_signals import flush_jobs, flusher, jobwriter

    handed: dict[str, float] = {}
    result = Window()
    submit, write_group = flusher.submit, jobwriter.write_group

    def timed_submit(committed: flusher.Committed) -> bool:
        now = time.perf_counter()
        handed.update((spec.job_id, now) for spec in committed.specs)
        return submit(committed)

    def timed_group(specs: list[Any]) -> list[str]:
        began = time.perf_counter()
        job_ids = write_group(specs)
        done = time.perf_counter()
        result.seconds += [done - handed.pop(job_id, began) for job_id in job_ids]
        result.writes += 1
        return job_ids

    flusher.submit, jobwriter.write_group = timed_submit, timed_group
    try:
        with variant(name):
            cpu = writer_cpu()
            time_creates(count, pace=pace)
            flush_jobs(timeout=60)
            result.writer_cpu = writer_cpu() - cpu
    finally:
        flusher.submit, jobwriter.write_group = submit, write_group
    return result


def writer_cpu() -> float:
    """CPU seconds the writer thread has used so far (0 before it starts, or off Linux)."""
    import threading

    from rq_signals.flusher import THREAD_NAME

    for thread in threading.enumerate():
        if thread.name == THREAD_NAME and thread.native_id is not None:
            path = Path(f"/proc/self/task/{thread.native_id}/schedstat")
            return int(path.read_text().split()[0]) / 1e9 if path.exists() else 0.0
    return 0.0


def run(ctx: Context) -> Section:
    began = time.monotonic()
    django_setup.setup(ctx)

    repeats, count = ctx.pick(5, 12), ctx.pick(40, 150)
    paced_count = ctx.pick(100, 250)
    counts = dict.fromkeys(VARIANTS, count) | {"sync": 10, "handwritten_naive": max(10, count // 4)}
    loops: dict[str, list[Loop]] = {name: [] for name in VARIANTS}
    latencies: dict[str, list[list[float]]] = {name: [] for name in PACED}
    names = list(VARIANTS)
    with variant("background"):
        time_creates(20)  # warm up: first queries, first connection to Redis, the writer thread
    for repeat in range(repeats):
        ctx.flush()
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            loops[name].append(tight(name, counts[name]))
        for name in PACED[repeat % len(PACED) :] + PACED[: repeat % len(PACED)]:
            latencies[name].append(paced(name, paced_count))
    windows = {
        (name, loop): window(name, ctx.pick(200, 1000), pace=PACE_SECONDS if loop == "paced" else 0.0)
        for name in ("async", "background")
        for loop in ("paced", "tight")
    }
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(
        f"{repeats} repeats; per repeat, tight loop: {count} creates per variant ({counts['sync']} for the "
        f"20 ms receiver, {counts['handwritten_naive']} for django_rq.get_queue() per call); paced loop: "
        f"{paced_count} creates per variant, one every {PACE_SECONDS * 1e3:g} ms. Windows: "
        f"{len(windows[('async', 'tight')].seconds)} jobs per instrumented pass."
    )
    section.rows += tight_rows(loops)
    section.rows += paced_rows(latencies)
    section.rows += window_rows(windows, loops)
    section.seconds = time.monotonic() - began
    return section


def ratios(values: list[float], baseline: list[float]) -> Summary:
    return summarize([a / b for a, b in zip(values, baseline, strict=True)])


def tight_rows(loops: dict[str, list[Loop]]) -> list[Row]:
    rows = []
    medians = {name: [loop.median for loop in runs] for name, runs in loops.items()}
    none = medians["none"]
    for name, label in VARIANTS.items():
        row = Row(f"{label}, tight loop", summarize(medians[name]), "µs per create", digits=0, scale=1e6)
        if name != "none":
            row.ratio, row.ratio_to = ratios(medians[name], none), "no receiver"
            added = summarize([a - b for a, b in zip(medians[name], none, strict=True)])
            row.note = f"adds {added.format(0, 1e6)} µs"
        if name in ("none", "async", "background"):
            wall = summarize([loop.wall for loop in loops[name]]).format(0, 1e6)
            cpu = summarize([loop.cpu for loop in loops[name]]).format(0, 1e6)
            row.note += (
                f"{'; ' if row.note else ''}wall {wall} µs and CPU {cpu} µs per create, writer included"
            )
        if name == "async":
            row.goal = "≤ 1.10× no receiver"
            row.met = row.ratio is not None and row.ratio.median <= 1.10
        rows.append(row)
    row = Row(
        "@async_receiver vs hand-written", summarize(medians["async"]), "µs per create", digits=0, scale=1e6
    )
    row.ratio, row.ratio_to = ratios(medians["async"], medians["handwritten"]), "hand-written"
    row.goal, row.met = "≤ hand-written enqueue", row.ratio.median <= 1.0
    rows.append(row)
    return rows


def paced_rows(latencies: dict[str, list[list[float]]]) -> list[Row]:
    rows = []
    medians = {name: [percentile(runs, 50) for runs in latencies[name]] for name in PACED}
    p99s = {name: [percentile(runs, 99) for runs in latencies[name]] for name in PACED}
    for name in PACED:
        row = Row(f"{VARIANTS[name]}, paced", summarize(medians[name]), "µs per create", digits=0, scale=1e6)
        row.note = f"p99 {summarize(p99s[name]).format(0, 1e6)} µs"
        if name != "none":
            row.ratio, row.ratio_to = ratios(medians[name], medians["none"]), "no receiver"
        if name == "background":
            row.goal = "≤ 1.10× no receiver (paced median)"
            row.met = row.ratio is not None and row.ratio.median <= 1.10
        rows.append(row)
    return rows


def window_rows(windows: dict[tuple[str, str], Window], loops: dict[str, list[Loop]]) -> list[Row]:
    rows = []
    for (name, loop), measured in windows.items():
        mode = "background" if name == "background" else "commit"
        p50, p99 = percentile(measured.seconds, 50), percentile(measured.seconds, 99)
        row = Row(
            f"commit → in Redis, FLUSH={mode!r}, {loop}", summarize([p50]), "µs (p50)", digits=0, scale=1e6
        )
        jobs = len(measured.seconds)
        row.note = f"p99 {p99 * 1e6:.0f} µs; max {max(measured.seconds) * 1e6:.0f} µs; "
        row.note += f"{jobs / measured.writes:.1f} jobs per write (request)"
        rows.append(row)
    for loop in ("paced", "tight"):
        measured = windows[("background", loop)]
        per_job = measured.writer_cpu / len(measured.seconds)
        row = Row(f"writer thread CPU, {loop}", summarize([per_job]), "µs per job", digits=0, scale=1e6)
        row.note = "the writer thread's own CPU time (schedstat) over the instrumented pass"
        rows.append(row)
    extra = [loop.cpu - none.cpu for loop, none in zip(loops["background"], loops["none"], strict=True)]
    commit = [loop.cpu - none.cpu for loop, none in zip(loops["async"], loops["none"], strict=True)]
    row = Row("process CPU added per create, background, tight", summarize(extra), "µs", digits=0, scale=1e6)
    row.note = f"commit mode: {summarize(commit).format(0, 1e6)} µs (all threads, process_time)"
    rows.append(row)
    return rows
