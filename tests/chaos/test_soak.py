"""A soak: thousands of jobs across high, default and low on two workers; none lost, no memory growth.

Two workers (fork per job, and simple: jobs in the worker process, where a leak of ours would stay)
serve the three queues while batches of 50 signals are committed every 0.1 s, each job carrying
a ~1 KB payload. The resident memory (RSS) of each worker process is sampled once a fifth of the
jobs have completed (warm-up: imports, caches and connection pools are in place) and again at the
end; it may grow by at most `RSS_SLACK_BYTES`.
"""

from __future__ import annotations

import time

import psutil
import pytest
import redis

from tests.chaos import keys
from tests.chaos.harness import Feeder, Ledger, Outcome, failed_count, send
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BATCH = 50
FEED_INTERVAL_SECONDS = 0.1
#: Growth of a worker's RSS between warm-up and the end that is still "no growth": allocator noise
#: (arenas, freelists), not a leak. A leak of 1 KB per job would be 10 MB over the full soak.
RSS_SLACK_BYTES = 8 * 1024 * 1024
PADDING = "x" * 1000


def test_a_soak_across_three_queues_loses_nothing_and_workers_do_not_grow(
    chaos_redis, worker_pool, chaos_receivers, full_size, report
):
    total = 10_000 if full_size else 500
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    signals = (chaos_receivers.work_high, chaos_receivers.work_default, chaos_receivers.work_low)
    workers = dict(
        zip(("fork", "simple"), worker_pool.start_many(chaos_redis, ("fork", "simple")), strict=True)
    )

    def batch(n: int) -> list[str]:
        tags = [f"soak-{n * BATCH + i}" for i in range(BATCH) if n * BATCH + i < total]
        sent = []
        for queue in range(3):
            sent += send(signals[queue], tags[queue::3], padding=PADDING)
        return sent

    def completed() -> int:
        return int(connection.hlen(keys.ENDED))

    def rss() -> dict[str, int]:
        return {kind: psutil.Process(proc.pid).memory_info().rss for kind, proc in workers.items()}

    feeder = Feeder(batch, interval_seconds=FEED_INTERVAL_SECONDS)
    feeder.start()
    try:
        wait_until(lambda: completed() >= total // 5, timeout=300, what="a fifth of the jobs (warm-up)")
        warm = rss()
        wait_until(lambda: len(feeder.sent) >= total, timeout=600, what="the feeder to send every job")
    finally:
        sent = feeder.stop()
    sent = sent[:total]  # the batch in flight when stopped may have sent an empty one
    wait_until(lambda: completed() >= len(set(sent)), timeout=600, what="every job to complete", interval=0.2)
    end = rss()
    ledger = Ledger.read(connection)
    growth = {kind: end[kind] - warm[kind] for kind in end}
    report(
        Outcome.of_stream(
            "soak high/default/low, 2 workers",
            ledger,
            sent,
            began=began,
            note="RSS warm->end MiB: "
            + ", ".join(f"{kind} {warm[kind] / 2**20:.1f}->{end[kind] / 2**20:.1f}" for kind in end),
        )
    )
    assert len(set(sent)) == total
    assert ledger.missing(sent) == []
    assert failed_count(connection) == 0
    assert all(value <= RSS_SLACK_BYTES for value in growth.values()), (
        f"worker RSS grew by more than {RSS_SLACK_BYTES} bytes: {growth}"
    )
    connection.close()
