"""Worker throughput on no-op jobs, one worker per class, same jobs; Redis cost per job.

Each class runs `rq worker --burst` as a subprocess over the same queue of N identical no-op jobs
(each carrying the retry policy our app attaches, which rq's classes ignore). The jobs are enqueued
as plain rq enqueues them (`rq.Queue`, rq's default serializer, pickle), and `rq worker` does not
start Django, so no class runs behind the app's job gate: each runs them as rq does. After a run,
every job must have finished (each job's status, and the failed registry), or the benchmark fails.
The run is cut into blocks of consecutive jobs; a block's rate is its size over the time from its
first job's start to its last job's end (rq's timestamps in the job hashes), so interpreter start-up
is not counted and the spread shows drift within a run as well as between runs. Classes are
interleaved within each repeat, so machine noise hits all alike; a ratio compares block i of a class
with block i of its baseline. Commands and round trips per job are deltas of the private server's
counters over the worker's whole run (start-up and shutdown included), divided by N (see
`harness.Counters`).

CPU per job is less sensitive to a busy machine than jobs/s: the worker's is the user + system
time of the worker process and every horse it reaped (`RUSAGE_CHILDREN` of this process around
the run) minus that of a run over an empty queue (start-up and shutdown), divided by N; Redis's is
the server's `used_cpu_user + used_cpu_sys` delta divided by N (indicative only: it includes
kernel network time and varies with how long the run took). The "CPU per job" rows turn the
worker's CPU into the throughput ratio it implies for a CPU-bound worker (baseline CPU / ours),
the figure to read when other processes compete for the CPUs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rq import Queue

from benchmarks import workers
from benchmarks.enqueueing import block_rates, enqueue_many, verify_finished
from benchmarks.harness import Context, Counters, Row, Section, children_cpu, top_commands
from benchmarks.stats import summarize

NAME = "throughput"
TITLE = "Worker throughput, no-op jobs, one worker"
GOALS = {
    "worker.PreforkRetryWorker": (2.0, "≥ 2× rq.Worker"),
    "worker.RetryWorker": (None, "none (forks per job, like rq.Worker)"),
    "worker.SimpleRetryWorker": (0.8, "≥ 0.8× rq.SimpleWorker"),
    "benchmarks.metered.MeteredSimpleRetryWorker": (0.95, "≥ 0.95× metrics off (worker.metrics on)"),
}
BLOCKS = 4


@dataclass(frozen=True)
class Run:
    """One burst run: jobs/s per block, the server's counters, and the CPU seconds the worker
    process and its horses used (start-up included)."""

    rates: list[float]
    counters: Counters
    cpu: float


def measure_once(ctx: Context, worker: workers.WorkerClass, jobs: int) -> Run:
    """One burst run over `jobs` no-op jobs (`jobs=0`: start-up and shutdown alone)."""
    ctx.flush()
    conn = ctx.connection()
    queue = Queue("bench", connection=conn)
    ids = enqueue_many(queue, "benchmarks.jobs.noop", jobs)
    before, cpu_before = Counters.take(conn), children_cpu()
    workers.run_burst(ctx.redis_url, worker, ["bench"], log_dir=ctx.log_dir, timeout=60 + jobs / 5)
    cpu = children_cpu() - cpu_before
    counters = Counters.take(conn).since(before)
    verify_finished(queue, ids, f"{worker.path}, {jobs} no-op jobs")
    rates = block_rates(queue, ids, BLOCKS) if jobs else []
    conn.close()
    return Run(rates, counters, cpu)


def cpu_row(worker: workers.WorkerClass, ours: list[float], baseline: list[float]) -> Row:
    """CPU per job, and the throughput ratio it implies when the worker is CPU-bound (baseline / ours)."""
    row = Row(f"{worker.path}, CPU per job", summarize(ours), "ms/job", digits=2, scale=1e3)
    row.ratio = summarize([b / a for a, b in zip(ours, baseline, strict=True)])
    row.ratio_to = f"{worker.baseline}'s rate if CPU-bound"
    target, row.goal = GOALS.get(worker.path, (None, ""))
    row.met = None if target is None else row.ratio.median >= target
    row.note = f"{worker.baseline}: {summarize(baseline).format(2, 1e3)} ms/job (CPU is steadier than jobs/s)"
    return row


def run(ctx: Context) -> Section:
    began = time.monotonic()
    classes = [w for w in (*workers.ALL, workers.METERED) if w.available()]
    missing = [w.path for w in (*workers.ALL, workers.METERED) if not w.available()]
    repeats = ctx.pick(1, 2)
    jobs_for = {True: ctx.pick(120, 400), False: ctx.pick(2000, 5000)}  # forking classes are ~10× slower
    rates: dict[str, list[float]] = {w.path: [] for w in classes}
    counts: dict[str, list[Counters]] = {w.path: [] for w in classes}
    cpu: dict[str, list[float]] = {w.path: [] for w in classes}
    startup = {w.path: measure_once(ctx, w, 0) for w in classes}
    for _ in range(repeats):
        for worker in classes:
            n = jobs_for[worker.fork_per_job]
            found = measure_once(ctx, worker, n)
            rates[worker.path] += found.rates
            counts[worker.path].append(found.counters)
            cpu[worker.path].append((found.cpu - startup[worker.path].cpu) / n)
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(
        f"Jobs per run: {jobs_for[False]} for the in-process classes, {jobs_for[True]} for the forking ones "
        f"(a fork per job makes those ~10× slower; the rate is per job either way); {repeats} run(s) "
        f"per class, {BLOCKS} blocks each, so spreads are over {repeats * BLOCKS} blocks."
    )
    by_path = {w.path: w for w in classes}
    for worker in classes:
        row = Row(worker.path, summarize(rates[worker.path]), "jobs/s", digits=0)
        if worker.baseline and worker.baseline in rates:
            ratios = [a / b for a, b in zip(rates[worker.path], rates[worker.baseline], strict=True)]
            row.ratio, row.ratio_to = summarize(ratios), worker.baseline
            target, row.goal = GOALS.get(worker.path, (None, ""))
            row.met = None if target is None else row.ratio.median >= target
        section.rows.append(row)
        if worker.baseline and worker.baseline in cpu:
            section.rows.append(cpu_row(worker, cpu[worker.path], cpu[worker.baseline]))
    for path in missing:
        target, goal = GOALS.get(path, (None, ""))
        section.rows.append(
            Row(path, None, "jobs/s", goal=goal, note="class not importable in this checkout")
        )
    section.extra += [
        "",
        "Redis cost per processed job (median over runs; round trips = server read events, see Method):",
        "",
        "| worker | worker CPU ms/job | Redis CPU µs/job | commands/job | round trips/job "
        "| most frequent commands per job |",
        "|---|---|---|---|---|---|",
    ]
    for path, runs in counts.items():
        n = jobs_for[by_path[path].fork_per_job]
        cmds = summarize([c.commands / n for c in runs])
        trips = summarize([c.reads / n for c in runs])
        redis_cpu = summarize([c.cpu / n for c in runs]).format(0, 1e6)
        worker_cpu = summarize(cpu[path]).format(2, 1e3)
        section.extra.append(
            f"| {path} | {worker_cpu} | {redis_cpu} | {cmds.format(1)} | {trips.format(1)} "
            f"| {top_commands(runs[len(runs) // 2], n)} |"
        )
    section.seconds = time.monotonic() - began
    return section
