"""A worker cut off from Redis for longer than its lease, mid-job: the job never runs twice at once.

Worker A reaches Redis through a TCP proxy (`tests.worker.crash_jobs.Partition`) and starts a job
whose first run takes 12 s. The proxy is cut: A cannot renew the job's 5 s lease, and the job's run
would go on (a receiver calling an API does not need Redis). Worker B, connected directly, scans for
expired leases meanwhile. A fences itself: once its lease has gone `lease_ttl - fence_margin`
seconds unrenewed it kills its horse (fork, prefork) or exits (simple), without reaching Redis; B
claims the job only `fence_margin` seconds past the lease's expiry, so its run starts after A's
stopped. When the link is mended A goes on (fork, prefork) and leaves the job to B.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.chaos.harness import Ledger, Outcome, is_running, process_tree, redis_time, send
from tests.chaos.keys import running_key
from tests.support.waiting import wait_until
from tests.worker.crash_jobs import Partition

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIRST_RUN_SECONDS = 12.0


def test_a_worker_cut_off_longer_than_its_lease_never_runs_a_job_alongside_its_recovery(
    chaos_redis, worker_pool, chaos_receivers, full_size, report
):
    kinds = ("fork", "simple", "prefork") if full_size else ("fork",)
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    link = Partition(chaos_redis.port)
    overlapping = []
    fenced_after: dict[str, float] = {}
    sent = []
    try:
        for kind in kinds:
            tag = f"partition-{kind}"
            # Given worker A, reaching Redis through the link, in the middle of a long first run
            worker_a = worker_pool.start(chaos_redis, kind, via=link.url())
            sent += send(
                chaos_receivers.work_default,
                [tag],
                hold_seconds=0.0,
                first_run_hold_seconds=FIRST_RUN_SECONDS,
            )
            pid = int(
                wait_until(
                    lambda a=worker_a, tag=tag: next(
                        (p for p in process_tree(a.pid) if connection.get(running_key(p)) == tag.encode()),
                        None,
                    ),
                    timeout=60,
                    what=f"worker A ({kind}) to start {tag}",
                )
            )

            # When the link is cut, with worker B scanning for expired leases
            link.cut()
            cut_at = time.monotonic()
            worker_b = worker_pool.start(chaos_redis, "simple", wait=False)

            # Then A stops its run by itself, while still cut off ...
            wait_until(lambda pid=pid: not is_running(pid), timeout=30, what=f"the cut-off run {pid} to stop")
            deaths = {pid: redis_time(connection)}
            fenced_after[kind] = time.monotonic() - cut_at
            assert Ledger.read(connection).started.get(tag, 0) == 1, (
                "the job ran again before A's run stopped"
            )

            # ... and B recovers the job and runs it to its end
            worker_pool.wait_ready(chaos_redis, worker_b)
            wait_until(
                lambda tag=tag: Ledger.read(connection).ended.get(tag, 0) >= 1,
                timeout=60,
                what=f"worker B to run {tag} to its end",
            )
            link.mend()
            ledger = Ledger.read(connection)
            overlapping += Ledger(
                ledger.started, ledger.ended, ledger.overlaps, {tag: ledger.runs[tag]}
            ).overlapping(deaths)
            if kind != "simple":  # (a simple worker exits to stop its run; its supervisor restarts it)
                assert worker_a.alive(), worker_a.output()[-3000:]
            worker_a.stop()
            worker_b.stop()
    finally:
        link.close()
        ledger = Ledger.read(connection)
        report(
            Outcome.of_stream(
                "worker cut off > lease, mid-job",
                ledger,
                sent,
                began=began,
                overlaps=len(overlapping),
                note="fenced "
                + ", ".join(f"{kind} {seconds:.1f}s" for kind, seconds in fenced_after.items())
                + " after the cut",
            )
        )
        connection.close()
    assert ledger.missing(sent) == []
    assert overlapping == [], [(a.pid, round(b.start - a.start, 2)) for a, b in overlapping]
    assert ledger.overlaps == set()
