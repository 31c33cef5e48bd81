"""Worker throughput through `rq_signals.jobs.run_receiver`: what decoding and refetching cost per job.

The app enqueues N real jobs: `Order.objects.create()` inside transactions of 100 with the
`@async_receiver` of `benchmarks/receivers.py` (whose body does nothing), so each job carries the
real JSON payload (the instance by reference, `created`, `update_fields`, `raw`, `using`...). The
baseline is the same jobs, copied with the same arguments, description and meta, but naming the
plain no-op function `benchmarks.jobs.noop`: the difference is `run_receiver`'s work (look up the
receiver, decode the payload, fetch the `Order` by pk, `close_old_connections()` twice).

Both kinds are JSON jobs on the app's queue (`rq_signals.queues.get_queue`, whose serializer is
`worker.serializers.JSONSerializer`; the copies are written with it too), and both run under the
app's job gate, as every worker started by Django does: `benchmarks/django_settings.py` allows
`benchmarks.jobs.noop` in `RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]` and leaves `ACCEPT_PICKLE` off, so
the baseline pays the same JSON decoding and gate check as the receiver jobs. After every run each
job must have finished, and each `run_receiver` job must have returned "called" (a job that skipped
its receiver, e.g. because the order was not found, did not pay for the refetch), or the benchmark
fails.

In full mode a third run repeats the receiver jobs with `CONN_MAX_AGE=60` in the worker's settings: with
Django's default of 0, each `close_old_connections()` closes the database connection, so every job
opens a new one. All three run under django-rq's `python -m django rqworker --worker-class CLASS
--burst` (Django set up in the worker every time), one after the other, rates measured in blocks
as in the throughput benchmark. The extra cost per job is given in CPU (the worker process's
user + system time over the run divided by N, the same start-up in both runs cancelling out) and
in wall time (1/rate − 1/plain rate); CPU is the steadier of the two on a busy machine.
"""

from __future__ import annotations

import time

from rq import Queue

from benchmarks import django_setup, workers
from benchmarks.enqueueing import BATCH, block_rates, verify_finished
from benchmarks.harness import Context, Row, Section, children_cpu
from benchmarks.stats import summarize

NAME = "receiver_throughput"
TITLE = "Worker throughput through run_receiver (real payload, refetch by pk)"
BLOCKS = 4
CLASSES = (workers.SIMPLE_RETRY, workers.PREFORK)


def enqueue_through_app(count: int) -> list[str]:
    """Create `count` orders (transactions of 100); the ids of the jobs the app enqueued, in order."""
    from django.db import transaction

    from rq_signals.queues import get_queue
    from tests.testapp.models import Order

    queue = get_queue("bench")
    for start in range(0, count, 100):
        with transaction.atomic():
            for index in range(start, min(count, start + 100)):
                Order.objects.create(reference=f"recv-{index}", total="9.99", notes={"gift": index % 2 == 0})
    return list(queue.get_job_ids())


def copy_jobs(queue: Queue, ids: list[str], func: str) -> list[str]:
    """Enqueue copies of jobs `ids` that call `func` with the same arguments, description and meta.

    The originals are read, and the copies written, with `queue`'s serializer (JSON for the app's
    queues; rq's default, pickle, would read their meta as ``{"unserialized": ...}`` without a word).
    """
    copies: list[str] = []
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        originals = queue.job_class.fetch_many(
            batch, connection=queue.connection, serializer=queue.serializer
        )
        missing = [job_id for job_id, job in zip(batch, originals, strict=True) if job is None]
        if missing:
            raise RuntimeError(f"copy_jobs: {len(missing)} jobs to copy are gone, e.g. {missing[0]}")
        datas = [
            Queue.prepare_data(func, args=job.args, description=job.description, meta=job.meta)
            for job in originals
            if job is not None
        ]
        with queue.connection.pipeline() as pipe:
            copies += [job.id for job in queue.enqueue_many(datas, pipeline=pipe)]
            pipe.execute()
    return copies


def verify_called(queue: Queue, ids: list[str], what: str) -> None:
    """Raise unless every `run_receiver` job of `ids` returned "called" (it ran the receiver)."""
    outcomes: dict[object, int] = {}
    for job_id in ids:
        job = queue.job_class.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        outcome = job.return_value()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if outcomes != {"called": len(ids)}:
        raise RuntimeError(f"{what}: run_receiver did not call the receiver every time: {outcomes}")


def measure_once(
    ctx: Context, worker: workers.WorkerClass, count: int, env: dict[str, str]
) -> dict[str, tuple[list[float], float]]:
    """Block rates (jobs/s) of the receiver jobs and of their plain copies, each in its own burst run."""
    from rq_signals.queues import get_queue

    ctx.flush()
    queue = get_queue("bench")
    ids = enqueue_through_app(count)
    found: dict[str, tuple[list[float], float]] = {}
    command = django_setup.worker_args(worker.path, "bench")

    def burst(kind: str, job_ids: list[str], run_env: dict[str, str]) -> tuple[list[float], float]:
        """Block rates, and CPU seconds per job of the worker process (Django start-up included)."""
        timeout, cpu_before = 60 + count / 5, children_cpu()
        workers.run_burst(
            ctx.redis_url, worker, [], log_dir=ctx.log_dir, timeout=timeout, env=run_env, command=command
        )
        cpu = (children_cpu() - cpu_before) / count
        what = f"{worker.path}, {kind} jobs (worker logs in {ctx.log_dir})"
        verify_finished(queue, job_ids, what)
        if queue.scheduled_job_registry.count:
            raise RuntimeError(f"{what}: {queue.scheduled_job_registry.count} jobs wait for a retry")
        if kind != "plain":
            verify_called(queue, job_ids, what)
        return block_rates(queue, job_ids, BLOCKS), cpu

    found["receiver"] = burst("receiver", ids, env)
    found["plain"] = burst("plain", copy_jobs(queue, ids, "benchmarks.jobs.noop"), env)
    if not ctx.quick:
        persistent = {**env, "BENCH_CONN_MAX_AGE": "60"}
        found["receiver_persistent"] = burst(
            "receiver_persistent", copy_jobs(queue, ids, "rq_signals.jobs.run_receiver"), persistent
        )
    return found


def cost_row(
    label: str, rates: list[float], cpus: list[float], plain: list[float], plain_cpus: list[float]
) -> Row:
    """Jobs/s of `label`'s runs against the plain copies', and what each job costs more."""
    row = Row(label, summarize(rates), "jobs/s", digits=0)
    row.ratio = summarize([a / b for a, b in zip(rates, plain, strict=True)])
    row.ratio_to = "plain copies"
    wall = summarize([1 / a - 1 / b for a, b in zip(rates, plain, strict=True)])
    cpu = summarize([a - b for a, b in zip(cpus, plain_cpus, strict=True)])
    row.note = f"costs {cpu.format(2, 1e3)} ms more CPU per job ({wall.format(2, 1e3)} ms more wall time)"
    return row


def run(ctx: Context) -> Section:
    began = time.monotonic()
    env = django_setup.setup(ctx)
    from benchmarks import receivers

    classes = [w for w in ctx.pick(CLASSES[:1], CLASSES) if w.available()]
    repeats, count = ctx.pick(1, 2), ctx.pick(400, 1000)
    rates: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    try:
        receivers.use("async")
        for _ in range(repeats):
            for worker in classes:
                for kind, (block, cpu) in measure_once(ctx, worker, count, env).items():
                    rates.setdefault((worker.path, kind), []).extend(block)
                    cpus.setdefault((worker.path, kind), []).extend([cpu] * len(block))
    finally:
        receivers.use("none")
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(f"{count} jobs per run, {repeats} run(s) per class, {BLOCKS} blocks per run.")
    labels = {"receiver": "run_receiver", "receiver_persistent": "run_receiver, CONN_MAX_AGE=60"}
    for worker in classes:
        plain, plain_cpu = rates[(worker.path, "plain")], cpus[(worker.path, "plain")]
        section.rows.append(Row(f"{worker.short}, plain no-op copies", summarize(plain), "jobs/s", digits=0))
        for kind, label in labels.items():
            if (worker.path, kind) in rates:
                row = cost_row(
                    f"{worker.short}, {label}",
                    rates[(worker.path, kind)],
                    cpus[(worker.path, kind)],
                    plain,
                    plain_cpu,
                )
                row.goal = "report the cost" if kind == "receiver" else ""
                section.rows.append(row)
    section.seconds = time.monotonic() - began
    return section
