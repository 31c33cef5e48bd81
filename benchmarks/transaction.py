"""A transaction with 100 signals against one: time, and Redis round trips per transaction.

In-process, as the request-overhead benchmark. One transaction is `with transaction.atomic():`
around N `Order.objects.create()` calls (N = 1 or 100), measured with no receiver and with one
`@async_receiver`, interleaved. Our app encodes each call at send time and pushes all of a
transaction's jobs after commit in one request (one script per queue). The hand-written receiver
(`on_commit` + `queue.enqueue` on the app's queue, JSON like ours, one request per job) is measured
too, for its round trips. Round trips are the requests the process sent (redis-py's
`send_packed_command` calls, counted in-process: a 100-job request outgrows the server's 16 KiB
read buffer, so server read events overcount it); commands are the server's counter delta over one
transaction, the commands a script runs included (our 100 jobs: the `EVAL`, then `SADD`, `RPUSH`
and one `HSET` per job inside it). "Added"
is the with-receiver time minus the no-receiver time of the same repeat: what the app costs,
without the database's own time for N inserts.

The goal row ("≤ 2× the 1-signal time") is kept as the issue states it; it cannot be met while the
database's own 100 inserts make the transaction ~20× the 1-insert one. The row marked "our reading"
judges the app's own part: the after-commit write, measured from the last insert to the return of
`atomic()` (commit mode) minus the same without a receiver, for 100 signals against 1. Encoding at
send time (per signal, inside the inserts' loop) is not in it; "added by the receiver" has it.

With `RQ_SIGNALS["FLUSH"] = "background"` the same transactions are timed again: the commit hands
the jobs to the writer thread and `atomic()` returns; after each timed transaction (outside the
timing) `rq_signals.flush_jobs()` waits for the writer, and the time from the end of `atomic()` to
its return is the commit→in-Redis window of that transaction's jobs. Its round trips are counted
with the writer's request included.
"""

from __future__ import annotations

import contextlib
import time

from benchmarks import django_setup
from benchmarks.harness import ClientRequests, Context, Counters, Row, Section
from benchmarks.stats import summarize

NAME = "transaction"
TITLE = "Transaction with 100 signals vs 1"
SIZES = (1, 100)
VARIANTS = ("none", "async", "background")


def time_transaction(size: int) -> tuple[float, float]:
    """Seconds of one transaction of `size` creates, and of its end: from the last insert to the return
    of ``atomic()`` (the commit, then in commit mode the after-commit write of its jobs)."""
    from django.db import transaction

    from tests.testapp.models import Order

    began = time.perf_counter()
    with transaction.atomic():
        for index in range(size):
            Order.objects.create(reference=f"tx-{index}", total="3.00")
        inserted = time.perf_counter()
    done = time.perf_counter()
    return done - began, done - inserted


def variant(name: str) -> contextlib.AbstractContextManager[None]:
    """Exactly `name`'s receiver on `Order` (see `benchmarks.receivers.variant`)."""
    from benchmarks import receivers

    return receivers.variant(name)


def drain() -> float:
    """Seconds until the writer thread has written everything pending (0 in commit mode)."""
    from rq_signals import flush_jobs

    began = time.perf_counter()
    if not flush_jobs(timeout=60):
        raise RuntimeError("the writer thread did not finish within 60 s")
    return time.perf_counter() - began


def count_requests(ctx: Context, size: int) -> tuple[int, Counters]:
    """Round trips (requests this process sent, the writer's too) and server counters over one transaction."""
    conn = ctx.connection()
    before = Counters.take(conn)
    with ClientRequests() as requests:
        time_transaction(size)
        drain()
    after = Counters.take(conn).since(before)
    conn.close()
    return requests.count, after


def run(ctx: Context) -> Section:
    began = time.monotonic()
    django_setup.setup(ctx)
    from benchmarks import receivers

    repeats = ctx.pick(5, 15)
    timings: dict[tuple[str, int], list[float]] = {(v, n): [] for v in VARIANTS for n in SIZES}
    ends: dict[tuple[str, int], list[float]] = {(v, n): [] for v in VARIANTS for n in SIZES}
    windows: dict[int, list[float]] = {n: [] for n in SIZES}
    trips: dict[tuple[str, int], tuple[int, Counters]] = {}
    try:
        for name in ("async", "background"):
            with variant(name):
                time_transaction(10)  # warm up (and start the writer thread)
                drain()
        for repeat in range(repeats):
            ctx.flush()
            for name in VARIANTS[repeat % len(VARIANTS) :] + VARIANTS[: repeat % len(VARIANTS)]:
                with variant(name):
                    for size in SIZES:
                        seconds, end = time_transaction(size)
                        timings[(name, size)].append(seconds)
                        ends[(name, size)].append(end)
                        window = drain()
                        if name == "background":
                            windows[size].append(window)
        for name in ("async", "background", "handwritten"):
            with variant(name):
                for size in SIZES:
                    trips[(name, size)] = count_requests(ctx, size)
    finally:
        receivers.use("none")
    section = Section(NAME, TITLE, __doc__ or "")
    added = {
        n: [a - b for a, b in zip(timings[("async", n)], timings[("none", n)], strict=True)] for n in SIZES
    }
    for size in SIZES:
        row = Row(
            f"{size} signal(s), @async_receiver",
            summarize(timings[("async", size)]),
            "ms",
            digits=2,
            scale=1e3,
        )
        row.note = (
            f"no receiver {summarize(timings[('none', size)]).format(2, 1e3)} ms; "
            f"added {summarize(added[size]).format(2, 1e3)} ms; "
            f"{trips[('async', size)][0]} round trip(s), {trips[('async', size)][1].commands} commands"
        )
        if size == SIZES[-1]:
            ratios = [a / b for a, b in zip(timings[("async", size)], timings[("async", 1)], strict=True)]
            row.ratio, row.ratio_to = summarize(ratios), "1 signal"
            row.goal, row.met = "≤ 2× the 1-signal time", row.ratio.median <= 2.0
        section.rows.append(row)
    requests = trips[("async", SIZES[-1])][0]
    row = Row(f"Redis round trips, {SIZES[-1]} signals", summarize([requests]), "per transaction", digits=0)
    row.goal, row.met = "one Redis round trip", requests == 1
    row.note = f"hand-written receiver: {trips[('handwritten', SIZES[-1])][0]}"
    section.rows.append(row)
    for size in SIZES:
        row = Row(
            f'{size} signal(s), FLUSH="background"',
            summarize(timings[("background", size)]),
            "ms",
            digits=2,
            scale=1e3,
        )
        extra = [a - b for a, b in zip(timings[("background", size)], timings[("none", size)], strict=True)]
        row.ratio = summarize(
            [a / b for a, b in zip(timings[("background", size)], timings[("async", size)], strict=True)]
        )
        row.ratio_to = "commit mode"
        row.note = (
            f"added {summarize(extra).format(2, 1e3)} ms; then in Redis "
            f"{summarize(windows[size]).format(2, 1e3)} ms after the commit returned; "
            f"{trips[('background', size)][0]} round trip(s), "
            f"{trips[('background', size)][1].commands} commands"
        )
        section.rows.append(row)
    ratio_added = [a / b for a, b in zip(added[SIZES[-1]], added[1], strict=True) if b > 0]
    if ratio_added:
        row = Row("added by the receiver, 100 vs 1", summarize(added[SIZES[-1]]), "ms", digits=2, scale=1e3)
        row.ratio, row.ratio_to = summarize(ratio_added), "added for 1 signal"
        section.rows.append(row)
    section.rows.append(after_commit_row(ends))
    section.extra += [
        f"{repeats} repeats. Redis requests per transaction:",
        "",
        "| receiver | signals | round trips (client requests) | server read events | commands |",
        "|---|---|---|---|---|",
    ]
    for (name, size), (requests, counters) in trips.items():
        section.extra.append(f"| {name} | {size} | {requests} | {counters.reads} | {counters.commands} |")
    section.seconds = time.monotonic() - began
    return section


def after_commit_row(ends: dict[tuple[str, int], list[float]]) -> Row:
    """Our reading of the goal: what the app adds at the end of a transaction, 100 signals against 1.

    The end of a transaction is the time from its last insert to the return of ``atomic()``: the
    commit, and in commit mode the write of its jobs. Minus the same end without a receiver (same
    repeat), that is the after-commit write: one round trip, plus per job what `jobwriter.write_jobs`
    does. The goal row above stays the goal; this row says how much of it the app's own part meets.
    """
    large = SIZES[-1]
    added = {n: [a - b for a, b in zip(ends[("async", n)], ends[("none", n)], strict=True)] for n in SIZES}
    row = Row(
        f"after-commit write, {large} signals vs 1 (our reading)",
        summarize(added[large]),
        "ms",
        digits=2,
        scale=1e3,
    )
    ratios = [a / b for a, b in zip(added[large], added[1], strict=True) if b > 0]
    if ratios:
        row.ratio, row.ratio_to = summarize(ratios), "1 signal's"
        row.goal = "≤ 2× (our reading: the app's own part, not the inserts)"
        row.met = row.ratio.median <= 2.0
    row.note = (
        f"last insert → atomic() returns, minus the same without receiver; 1 signal: "
        f"{summarize(added[1]).format(2, 1e3)} ms; with receiver {large}: "
        f"{summarize(ends[('async', large)]).format(2, 1e3)} ms, 1: "
        f"{summarize(ends[('async', 1)]).format(2, 1e3)} ms; without: "
        f"{summarize(ends[('none', large)]).format(2, 1e3)} / "
        f"{summarize(ends[('none', 1)]).format(2, 1e3)} ms"
    )
    return row
