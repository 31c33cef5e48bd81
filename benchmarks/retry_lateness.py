"""Retry lateness: how long after its due time a retry starts, ours against rq's `Retry` + scheduler.

Jobs are enqueued at `PACE_PER_SECOND` (so one worker is never saturated); each fails on its first
attempt and succeeds on its second. Every job gets its own delay, drawn uniformly from 0.2–1 s:
ours as `Backoff(max_retries=1, base=delay, jitter="none")` in `job.meta` (exactly what the app
attaches), rq's as `Retry(max=1, interval=[delay])` run by `rq worker --with-scheduler`.

Lateness = start of the second attempt − (moment the first attempt raised + delay), both taken with
`time.time()` inside the job, the same rule for every class. It includes the worker's failure
handling after the raise; negative means the retry ran early. For our classes the report also gives
lateness against the `retry_at` the worker recorded in `job.meta["attempts"]`. Lateness splits in
two at the moment the retry was put back on its queue (the job's `enqueued_at`, which the promoter
or rq's scheduler sets): how late it was put back, and how long it then waited for the worker.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

from rq import Queue, Retry
from rq.job import Job

from benchmarks import workers
from benchmarks.harness import Context, Row, Section
from benchmarks.jobs import FAILED_AT_KEY, RETRIED_AT_KEY
from benchmarks.stats import percentile, summarize
from worker.retries.backoff import POLICY_META_KEY, Backoff

NAME = "retry_lateness"
TITLE = "Retry lateness, retries due 0.2–1 s after failure"
PACE_PER_SECOND = 10.0
GOAL_P99_MS = 50.0
RQ_BASELINE = workers.WorkerClass("rq.SimpleWorker", fork_per_job=False)
OURS = (workers.SIMPLE_RETRY, workers.PREFORK, workers.RETRY)


def measure_once(
    ctx: Context, worker: workers.WorkerClass, jobs: int, *, ours: bool
) -> dict[str, list[float]]:
    """Lateness in seconds of `jobs` retries (key "due"), and against the recorded `retry_at` ("recorded")."""
    ctx.flush()
    conn = ctx.connection()
    queue = Queue("bench", connection=conn)
    rng = random.Random(len(worker.path))
    delays: dict[str, float] = {}
    extra = [] if ours else ["--with-scheduler"]
    proc = workers.start(ctx.redis_url, worker, ["bench"], log_dir=ctx.log_dir, extra_args=extra)
    try:
        workers.wait_idle(conn, proc)
        began = time.monotonic()
        for index in range(jobs):
            pause = began + index / PACE_PER_SECOND - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            delay = rng.uniform(0.2, 1.0)
            if ours:
                meta = {POLICY_META_KEY: Backoff(max_retries=1, base=delay, jitter="none").to_dict()}
                job = queue.enqueue("benchmarks.jobs.fail_once", meta=meta)
            else:
                job = queue.enqueue("benchmarks.jobs.fail_once", retry=Retry(max=1, interval=[delay]))  # type: ignore[list-item]
            delays[job.id] = delay
        deadline = time.monotonic() + 30 + jobs / 5
        while conn.hlen(RETRIED_AT_KEY) < jobs:
            if time.monotonic() > deadline or not proc.alive():
                raise RuntimeError(f"{worker.path}: {conn.hlen(RETRIED_AT_KEY)}/{jobs} retries ran in time")
            time.sleep(0.05)
    finally:
        proc.stop()
    failed = {k.decode(): float(v) for k, v in conn.hgetall(FAILED_AT_KEY).items()}
    retried = {k.decode(): float(v) for k, v in conn.hgetall(RETRIED_AT_KEY).items()}
    result: dict[str, list[float]] = {"due": [], "recorded": [], "promotion": [], "queued": []}
    for job_id, delay in delays.items():
        due = failed[job_id] + delay
        result["due"].append(retried[job_id] - due)
        job = Job.fetch(job_id, connection=conn)
        if job.enqueued_at is not None:  # set again when the retry was put back on the queue
            promoted = job.enqueued_at.replace(tzinfo=timezone.utc).timestamp()
            result["promotion"].append(promoted - due)
            result["queued"].append(retried[job_id] - promoted)
        if ours:
            recorded = recorded_retry_at(job)
            if recorded is not None:
                result["recorded"].append(retried[job_id] - recorded)
    conn.close()
    return result


def recorded_retry_at(job: Job) -> float | None:
    """The `retry_at` our worker recorded for the job's retried attempt, as a Unix time."""
    for attempt in reversed(job.meta.get("attempts", [])):
        if attempt.get("retry_at"):
            return datetime.fromisoformat(attempt["retry_at"]).timestamp()
    return None


def run(ctx: Context) -> Section:
    began = time.monotonic()
    ours = [w for w in ctx.pick(OURS[:2], OURS) if w.available()]  # quick: not the saturating forking class
    repeats, jobs = ctx.pick(1, 2), ctx.pick(30, 100)
    p99: dict[str, list[float]] = {w.path: [] for w in [RQ_BASELINE, *ours]}
    p50: dict[str, list[float]] = {w.path: [] for w in [RQ_BASELINE, *ours]}
    early: dict[str, float] = dict.fromkeys(p99, 0.0)
    recorded: dict[str, list[float]] = {w.path: [] for w in ours}
    parts: dict[str, dict[str, list[float]]] = {
        w.path: {"promotion": [], "queued": []} for w in [RQ_BASELINE, *ours]
    }
    for _ in range(repeats):
        for worker in [RQ_BASELINE, *ours]:
            is_ours = worker is not RQ_BASELINE
            found = measure_once(ctx, worker, jobs, ours=is_ours)
            p99[worker.path].append(percentile(found["due"], 99) * 1000)
            p50[worker.path].append(percentile(found["due"], 50) * 1000)
            early[worker.path] = min(early[worker.path], min(found["due"]) * 1000)
            for part in ("promotion", "queued"):
                if found[part]:
                    parts[worker.path][part].append(percentile(found[part], 99) * 1000)
            if is_ours and found["recorded"]:
                recorded[worker.path].append(percentile(found["recorded"], 99) * 1000)
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(f"{jobs} retries per run, {repeats} run(s) per class, classes interleaved.")
    for worker in [RQ_BASELINE, *ours]:
        label = (
            f"{worker.path} {'+ rq Retry, --with-scheduler' if worker is RQ_BASELINE else '+ Backoff'} p99"
        )
        row = Row(label, summarize(p99[worker.path]), "ms", digits=0)
        row.note = f"p50 {summarize(p50[worker.path]).format(0)} ms; earliest {early[worker.path]:.0f} ms"
        for part, what in (
            ("promotion", "put back on the queue late by"),
            ("queued", "then waited in the queue"),
        ):
            if parts[worker.path][part]:
                row.note += f"; {what} {summarize(parts[worker.path][part]).format(0)} ms (p99)"
        if worker is not RQ_BASELINE:
            ratios = [a / b for a, b in zip(p99[worker.path], p99[RQ_BASELINE.path], strict=True)]
            row.ratio, row.ratio_to = summarize(ratios), "rq Retry"
            row.goal = f"p99 ≤ {GOAL_P99_MS:.0f} ms"
            row.met = row.summary is not None and row.summary.median <= GOAL_P99_MS
            if recorded[worker.path]:
                row.note += f"; p99 vs recorded retry_at {summarize(recorded[worker.path]).format(0)} ms"
        section.rows.append(row)
    section.seconds = time.monotonic() - began
    return section
