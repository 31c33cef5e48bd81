"""Request overhead: what one `@async_receiver` adds to `Order.objects.create()` in the web process.

In-process, Django with SQLite (a file in a temp dir) and the private Redis. Variants, all on the
same model and measured in the same run, interleaved (the order rotates every repeat):

- **none**: no receiver on `Order`'s post_save;
- **async**: our `@async_receiver(post_save, sender=Order, queue=..., retry=Backoff(...))` (encodes
  the payload, enqueues after commit: `Order.objects.create()` in autocommit has no transaction to
  wait for, so the job goes to Redis before `create()` returns);
- **sync 20 ms**: a plain receiver doing 20 ms of (I/O-like, sleeping) work in the request;
- **hand-written**: a plain receiver that calls `transaction.on_commit(lambda: queue.enqueue(...))` on
  a queue built once;
- **hand-written, django_rq.get_queue() per call**: the same, as django-rq's README writes it.

Each repeat times every `create()` on its own and keeps the median; figures are the median over
repeats with the spread of the per-repeat medians, and ratios are taken within each repeat.
"""

from __future__ import annotations

import time

from benchmarks import django_setup
from benchmarks.harness import Context, Row, Section
from benchmarks.stats import summarize

NAME = "request_overhead"
TITLE = "Request overhead: Order.objects.create() with one receiver"
VARIANTS = {
    "none": "no receiver",
    "async": "@async_receiver",
    "handwritten": "hand-written on_commit + queue.enqueue",
    "handwritten_naive": "hand-written, django_rq.get_queue() per call",
    "sync": "sync receiver, 20 ms of work",
}


def time_creates(count: int) -> float:
    """Median seconds of one `Order.objects.create()` over `count` calls."""
    from tests.testapp.models import Order

    durations = []
    for index in range(count):
        began = time.perf_counter()
        Order.objects.create(reference=f"bench-{index}", total="12.50")
        durations.append(time.perf_counter() - began)
    durations.sort()
    return durations[len(durations) // 2]


def run(ctx: Context) -> Section:
    began = time.monotonic()
    django_setup.setup(ctx)
    from benchmarks import receivers

    repeats, count = ctx.pick(5, 12), ctx.pick(40, 150)
    counts = dict.fromkeys(VARIANTS, count) | {"sync": 10, "handwritten_naive": max(10, count // 4)}
    medians: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    try:
        receivers.use("none")
        time_creates(20)  # warm up: first queries, first connection to Redis
        for repeat in range(repeats):
            ctx.flush()
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                receivers.use(name)
                medians[name].append(time_creates(counts[name]))
    finally:
        receivers.use("none")
    section = Section(NAME, TITLE, __doc__ or "")
    section.extra.append(
        f"{repeats} repeats; per repeat {count} creates per variant ({counts['sync']} for the 20 ms "
        f"receiver, {counts['handwritten_naive']} for django_rq.get_queue() per call)."
    )
    none = medians["none"]
    for name, label in VARIANTS.items():
        row = Row(label, summarize(medians[name]), "µs per create", digits=0, scale=1e6)
        if name != "none":
            row.ratio = summarize([a / b for a, b in zip(medians[name], none, strict=True)])
            row.ratio_to = "no receiver"
            added = summarize([a - b for a, b in zip(medians[name], none, strict=True)])
            row.note = f"adds {added.format(0, 1e6)} µs"
        if name == "async":
            row.goal = "≤ 1.10× no receiver"
            row.met = row.ratio is not None and row.ratio.median <= 1.10
        section.rows.append(row)
    versus = [a / b for a, b in zip(medians["async"], medians["handwritten"], strict=True)]
    row = Row(
        "@async_receiver vs hand-written", summarize(medians["async"]), "µs per create", digits=0, scale=1e6
    )
    row.ratio, row.ratio_to, row.goal = summarize(versus), "hand-written", "≤ hand-written enqueue"
    row.met = row.ratio.median <= 1.0
    section.rows.append(row)
    section.seconds = time.monotonic() - began
    return section
