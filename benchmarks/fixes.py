"""Proposed fixes, measured: throughput of each worker class beside a subclass changing one hot spot.

Same method as the throughput benchmark (burst subprocess, block rates, CPU per job with start-up
subtracted, interleaved). The
subclasses are in `benchmarks/experiments.py`; each row's ratio is to the class it modifies.
"""

from __future__ import annotations

import time

from benchmarks import workers
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import summarize
from benchmarks.throughput import measure_once

NAME = "fixes"
TITLE = "Proposed fixes, measured (worker throughput)"
PAIRS = (
    (
        workers.RETRY,
        workers.WorkerClass("benchmarks.experiments.CachedLibcRetryWorker", baseline="worker.RetryWorker"),
        "libc resolved once before the fork (no `ldconfig -p` per horse)",
    ),
    (
        workers.SIMPLE_RETRY,
        workers.WorkerClass(
            "benchmarks.experiments.SteadyBeatSimpleRetryWorker",
            baseline="worker.SimpleRetryWorker",
            fork_per_job=False,
        ),
        "one long-lived lease thread instead of one per job",
    ),
)


def run(ctx: Context) -> Section:
    began = time.monotonic()
    repeats = ctx.pick(1, 2)
    jobs_for = {True: ctx.pick(160, 400), False: ctx.pick(1000, 2000)}
    classes = [workers.RQ_WORKER, workers.RQ_SIMPLE] + [w for pair in PAIRS for w in pair[:2]]
    rates: dict[str, list[float]] = {w.path: [] for w in classes}
    cpu: dict[str, list[float]] = {w.path: [] for w in classes}
    startup = {w.path: measure_once(ctx, w, 0).cpu for w in classes}
    for _ in range(repeats):
        for worker in classes:
            n = jobs_for[worker.fork_per_job]
            found = measure_once(ctx, worker, n)
            rates[worker.path] += found.rates
            cpu[worker.path].append((found.cpu - startup[worker.path]) / n)
    section = Section(NAME, TITLE, __doc__ or "")
    for worker in classes[:2]:
        section.rows.append(Row(worker.path, summarize(rates[worker.path]), "jobs/s", digits=0))
    for original, fixed, what in PAIRS:
        section.rows.append(Row(original.path, summarize(rates[original.path]), "jobs/s", digits=0))
        row = Row(
            f"{fixed.short}: {what}", summarize(rates[fixed.path]), "jobs/s", digits=0, note="experiment"
        )
        row.ratio = summarize([a / b for a, b in zip(rates[fixed.path], rates[original.path], strict=True)])
        row.ratio_to = original.path
        rq_base = "rq.Worker" if original.fork_per_job else "rq.SimpleWorker"
        versus = summarize([a / b for a, b in zip(rates[fixed.path], rates[rq_base], strict=True)])
        cpu_ratio = summarize([a / b for a, b in zip(cpu[fixed.path], cpu[original.path], strict=True)])
        fixed_cpu, original_cpu = summarize(cpu[fixed.path]), summarize(cpu[original.path])
        row.note = (
            f"experiment; {versus.format(2)}× {rq_base}'s rate; CPU {fixed_cpu.format(2, 1e3)} ms/job, "
            f"{cpu_ratio.format(2)}× {original.short}'s ({original_cpu.format(2, 1e3)})"
        )
        section.rows.append(row)
    section.seconds = time.monotonic() - began
    return section
