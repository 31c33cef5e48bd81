"""Worker memory: PSS of the worker and its horse after many no-op jobs, and its growth over the run.

A worker of each class runs (not in burst mode) and gets the same no-op jobs in batches; after
each batch has finished and the worker is idle again, the memory of the worker process plus its
children (the long-lived work horse of the prefork class; the forking classes have none while
idle) is read with psutil as PSS (proportional set size: RSS with each shared page split among
the processes sharing it, so a horse forked from its worker is not counted twice). "After N jobs"
is the last sample; "growth" is the last sample minus the one after the first batch (so one-off
imports and caches on the first job are not counted as growth). One run per class (memory varies
little between runs); every sample of the run is listed below the table.
"""

from __future__ import annotations

import time

import psutil
from rq import Queue

from benchmarks import workers
from benchmarks.enqueueing import enqueue_many
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import summarize

NAME = "memory"
TITLE = "Worker memory (PSS of worker + horse) after many no-op jobs"
MIB = 1024 * 1024
GOAL_EXTRA_MIB = 10.0


def tree_pss(pid: int) -> int:
    """Bytes of memory of process `pid` and its children, shared pages split between them (PSS).

    Summing RSS would count every page a forked horse shares with its worker twice.
    """
    total = 0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        total += getattr(info, "pss", info.rss)
    return total


def measure_once(ctx: Context, worker: workers.WorkerClass, jobs: int, batches: int) -> list[int]:
    """RSS samples in bytes: idle before any job, then after each of `batches` batches."""
    ctx.flush()
    conn = ctx.connection()
    queue = Queue("bench", connection=conn)
    proc = workers.start(ctx.redis_url, worker, ["bench"], log_dir=ctx.log_dir)
    try:
        workers.wait_idle(conn, proc)
        samples = [tree_pss(proc.pid)]
        size = jobs // batches
        for batch in range(batches):
            enqueue_many(queue, "benchmarks.jobs.noop", size)
            deadline = time.monotonic() + 30 + size / 5
            while queue.finished_job_registry.count < size * (batch + 1):
                if queue.failed_job_registry.count:
                    raise RuntimeError(
                        f"{worker.path}: {queue.failed_job_registry.count} jobs failed; log:\n"
                        f"{proc.output()[-3000:]}"
                    )
                if time.monotonic() > deadline or not proc.alive():
                    raise RuntimeError(f"{worker.path}: batch {batch + 1} did not finish in time")
                time.sleep(0.05)
            workers.wait_idle(conn, proc)
            time.sleep(0.1)  # a forking worker reaps its last horse
            samples.append(tree_pss(proc.pid))
        return samples
    finally:
        proc.stop()
        conn.close()


def run(ctx: Context) -> Section:
    began = time.monotonic()
    # Quick mode keeps the goal's comparison (ours against rq.Worker) and drops the classes it implies.
    wanted = ctx.pick((workers.RQ_WORKER, workers.SIMPLE_RETRY, workers.PREFORK), workers.ALL)
    classes = [w for w in wanted if w.available()]
    repeats, batches = 1, ctx.pick(3, 5)
    jobs_for = {True: ctx.pick(120, 1000), False: ctx.pick(450, 5000)}
    final: dict[str, list[float]] = {w.path: [] for w in classes}
    growth: dict[str, list[float]] = {w.path: [] for w in classes}
    idle: dict[str, list[float]] = {w.path: [] for w in classes}
    series: dict[str, list[float]] = {}
    for _ in range(repeats):
        for worker in classes:
            samples = measure_once(ctx, worker, jobs_for[worker.fork_per_job], batches)
            series[worker.path] = [sample / MIB for sample in samples]
            idle[worker.path].append(samples[0] / MIB)
            final[worker.path].append(samples[-1] / MIB)
            growth[worker.path].append((samples[-1] - samples[1]) / MIB)
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(
        f"Jobs per run: {jobs_for[False]} for in-process and prefork classes, {jobs_for[True]} for the "
        f"fork-per-job ones, in {batches} batches; {repeats} run(s) per class."
    )
    for worker in classes:
        row = Row(
            f"{worker.path} after {jobs_for[worker.fork_per_job]} jobs", summarize(final[worker.path]), "MiB"
        )
        row.note = (
            f"idle at start {summarize(idle[worker.path]).format(1)} MiB; "
            f"growth after first batch {summarize(growth[worker.path]).format(1)} MiB"
        )
        baseline = "rq.Worker" if worker.baseline else None
        if baseline in final:
            extra = [a - b for a, b in zip(final[worker.path], final[baseline], strict=True)]
            row.ratio = summarize([a / b for a, b in zip(final[worker.path], final[baseline], strict=True)])
            row.ratio_to = baseline
            row.goal = f"≤ rq.Worker + {GOAL_EXTRA_MIB:.0f} MiB, no growth"
            row.met = (
                summarize(extra).median <= GOAL_EXTRA_MIB and summarize(growth[worker.path]).median < 1.0
            )
            row.note += f"; {summarize(extra).format(1)} MiB over rq.Worker"
        section.rows.append(row)
    section.extra += ["", "Samples (MiB): idle, then after each batch:", ""]
    section.extra += [f"- {path}: {', '.join(f'{v:.1f}' for v in values)}" for path, values in series.items()]
    section.seconds = time.monotonic() - began
    return section
