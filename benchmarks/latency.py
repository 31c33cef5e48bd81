"""Enqueue→start latency at a steady 50 jobs/s into an idle worker.

A worker of each class runs (not in burst mode) and is waited for until it reports itself idle.
The benchmark then enqueues jobs at 50 per second (paced on the monotonic clock); each job's
argument is `time.time()` taken just before its `enqueue()` call, and the job records
`time.time()` minus that as its first act, so the latency includes the enqueue call itself, the
worker's dequeue (BLPOP wake-up), its bookkeeping before the job and, for a forking class, the fork.
p50/p99/max are over all jobs of a run; the spread is over runs.
"""

from __future__ import annotations

import time

from rq import Queue

from benchmarks import workers
from benchmarks.enqueueing import POLICY_META
from benchmarks.harness import Context, Row, Section
from benchmarks.jobs import LATENCY_KEY
from benchmarks.stats import percentile, summarize

NAME = "latency"
TITLE = "Enqueue→start latency at 50 jobs/s, idle worker"
RATE_PER_SECOND = 50.0
GOAL_P99_MS = 10.0


def measure_once(ctx: Context, worker: workers.WorkerClass, jobs: int) -> list[float]:
    """Latencies in seconds of `jobs` jobs enqueued at `RATE_PER_SECOND` into an idle worker."""
    ctx.flush()
    conn = ctx.connection()
    queue = Queue("bench", connection=conn)
    proc = workers.start(ctx.redis_url, worker, ["bench"], log_dir=ctx.log_dir)
    try:
        workers.wait_idle(conn, proc)
        time.sleep(0.2)  # let start-up threads settle
        began = time.monotonic()
        for index in range(jobs):
            pause = began + index / RATE_PER_SECOND - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            queue.enqueue("benchmarks.jobs.record_latency", time.time(), meta=dict(POLICY_META))
        deadline = time.monotonic() + 30 + jobs / 10
        while conn.hlen(LATENCY_KEY) < jobs:
            if queue.failed_job_registry.count:
                raise RuntimeError(f"{worker.path}: jobs failed; log:\n{proc.output()[-3000:]}")
            if time.monotonic() > deadline or not proc.alive():
                raise RuntimeError(f"{worker.path}: {conn.hlen(LATENCY_KEY)}/{jobs} jobs ran in time")
            time.sleep(0.05)
        return [float(value) for value in conn.hvals(LATENCY_KEY)]
    finally:
        proc.stop()
        conn.close()


def run(ctx: Context) -> Section:
    began = time.monotonic()
    classes = [w for w in workers.ALL if w.available()]
    repeats, jobs = ctx.pick(1, 2), ctx.pick(100, 300)
    p99: dict[str, list[float]] = {w.path: [] for w in classes}
    p50: dict[str, list[float]] = {w.path: [] for w in classes}
    worst: dict[str, float] = {w.path: 0.0 for w in classes}
    for _ in range(repeats):
        for worker in classes:
            values = measure_once(ctx, worker, jobs)
            p99[worker.path].append(percentile(values, 99) * 1000)
            p50[worker.path].append(percentile(values, 50) * 1000)
            worst[worker.path] = max(worst[worker.path], max(values) * 1000)
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(f"{jobs} jobs per run, {repeats} run(s) per class; classes interleaved.")
    for worker in classes:
        row = Row(f"{worker.path} p99", summarize(p99[worker.path]), "ms", digits=1)
        row.note = f"p50 {summarize(p50[worker.path]).format(1)} ms, max {worst[worker.path]:.1f} ms"
        baseline = worker.baseline
        if baseline in p99:
            ratios = [a / b for a, b in zip(p99[worker.path], p99[baseline], strict=True)]
            row.ratio, row.ratio_to = summarize(ratios), baseline
            row.goal = f"p99 ≤ {GOAL_P99_MS:.0f} ms"
            row.met = row.summary is not None and row.summary.median <= GOAL_P99_MS
        section.rows.append(row)
    section.seconds = time.monotonic() - began
    return section
