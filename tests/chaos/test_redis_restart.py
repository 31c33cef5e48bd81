"""Redis restarted mid-run (AOF, fsync always): no job lost, whether it was queued, running or being sent.

Two workers (fork per job, simple) run a steady stream of 0.1 s jobs (every tenth first run takes
2 s). Redis is restarted while jobs run: stopped cleanly (SIGTERM), then killed outright (SIGKILL),
in turn, each time started again on the same AOF; at full size each crash lasts longer than a lease.
Jobs committed while Redis is down wait in the outbox (``OUTBOX="on_failure"``) and are
relayed by the workers once it is back (their maintenance chores include the outbox relay).
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from rq_signals.models import OutboxEntry
from tests.chaos.harness import (
    Feeder,
    Ledger,
    Outcome,
    failed_count,
    send,
    wait_for_all,
)
from tests.chaos.workers import LEASE_SECONDS
from tests.support.processes import Proc
from tests.support.waiting import wait_until
from worker.safety.fencing import FENCED_EXIT_STATUS

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOLD_SECONDS = 0.1
#: Every tenth job's first run takes this long, so some are mid-run when Redis goes.
LONG_HOLD_SECONDS = 2.0
#: Full size: every crash of Redis lasts longer than a lease, and the workers must not judge the
#: leases of jobs that ran on through it as expired.
LONG_OUTAGE_SECONDS = LEASE_SECONDS + 2
FEED_INTERVAL_SECONDS = 0.05


def replace_fenced_workers(worker_pool, server, fenced: list[Proc]) -> None:
    """Start a simple worker in place of each that fenced itself, as its supervisor would.

    Redis down for longer than lease_ttl - fence_margin looks like a partition to a worker: a simple
    worker in the middle of a job exits with status 75 to stop it (worker.fencing), and the job is
    recovered once Redis is back. Any other exit is a failure.
    """
    for proc in list(worker_pool.procs):
        if proc.alive() or proc in fenced:
            continue
        log = proc.output()
        assert proc.wait(10) == FENCED_EXIT_STATUS, log[-3000:]
        assert "lease not renewed" in log
        fenced.append(proc)
        worker_pool.start(server, "simple", wait=False)


def test_redis_restarts_mid_run_lose_no_job(
    persistent_redis, worker_pool, chaos_receivers, full_size, report
):
    restarts = 6 if full_size else 2
    began = time.monotonic()
    signals = (chaos_receivers.work_high, chaos_receivers.work_default, chaos_receivers.work_low)
    worker_pool.start_many(persistent_redis, ("fork", "simple"))
    feeder = Feeder(
        lambda n: send(
            signals[n % 3],
            [f"restart-{n}"],
            hold_seconds=HOLD_SECONDS,
            first_run_hold_seconds=LONG_HOLD_SECONDS if n % 10 == 0 else HOLD_SECONDS,
        ),
        interval_seconds=FEED_INTERVAL_SECONDS,
    )
    feeder.start()
    outboxed: set[str] = set()  # job ids that went through the outbox
    fenced: list[Proc] = []  # simple workers that exited to stop a job they could no longer renew
    try:
        for number in range(restarts):
            # Given jobs completing, and some under way
            connection = redis.Redis.from_url(persistent_redis.url)
            done_before = sum(Ledger.read(connection).ended.values())
            wait_until(
                lambda connection=connection, done=done_before: (
                    sum(Ledger.read(connection).ended.values()) >= done + 10
                ),
                timeout=60,
                what="ten more jobs to complete before the restart",
            )
            connection.close()
            # When Redis stops (cleanly, then by a crash) and starts again on its AOF
            if number % 2 == 0:
                persistent_redis.stop()
            else:
                persistent_redis.kill()
            wait_until(lambda: OutboxEntry.objects.exists(), timeout=10, what="a send while Redis is down")
            outboxed |= set(OutboxEntry.objects.values_list("job_id", flat=True))
            if full_size and number % 2:
                # a fault's duration, not a synchronisation: Redis stays down longer than a lease
                threading.Event().wait(LONG_OUTAGE_SECONDS)
            persistent_redis.start()
            replace_fenced_workers(worker_pool, persistent_redis, fenced)
        sent = feeder.stop()
    finally:
        if feeder.is_alive():
            feeder.stop()

    # Then the workers' relay drains the outbox and every job sent runs
    connection = redis.Redis.from_url(persistent_redis.url)
    outboxed |= set(OutboxEntry.objects.values_list("job_id", flat=True))
    wait_until(lambda: not OutboxEntry.objects.exists(), timeout=30, what="the outbox to drain")
    replace_fenced_workers(worker_pool, persistent_redis, fenced)  # (fenced after the last check)
    ledger = wait_for_all(connection, sent, timeout=120, what="every job of the stream to complete")
    failed = failed_count(connection)
    report(
        Outcome.of_stream(
            "restart Redis mid-run (AOF)",
            ledger,
            sent,
            began=began,
            note=f"{restarts} restarts; {len(outboxed)} via outbox, relayed by the workers; "
            f"{len(fenced)} simple workers fenced themselves and were replaced",
        )
    )
    assert ledger.missing(sent) == []
    assert ledger.overlaps == set()
    assert failed == 0, worker_pool.logs()[-5000:]
    assert all(proc.alive() for proc in worker_pool.procs if proc not in fenced), (
        "a worker died with the Redis restart"
    )
    connection.close()
