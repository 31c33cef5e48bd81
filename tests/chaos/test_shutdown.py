"""Workers shut down mid-job under a steady stream, warm (SIGTERM) and cold (SIGTERM twice): nothing lost.

Warm: the worker finishes the job it is running, then exits; the job ran once. Cold (a second SIGTERM
a second or more after the first): the job is stopped at once and put back at the front of its
queue; another worker runs it again to its end, never while the interrupted run is under way. Every
fourth job's first run takes 3 s, so a cold shutdown can catch one mid-way.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from tests.chaos.harness import (
    Feeder,
    Ledger,
    Outcome,
    failed_count,
    is_running,
    process_tree,
    redis_time,
    send,
    wait_for_all,
)
from tests.chaos.keys import running_key
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

KINDS = ("fork", "simple", "prefork")
HOLD_SECONDS = 0.2
LONG_FIRST_RUN_SECONDS = 3.0
#: rq ignores a second shutdown signal that comes within a second of the first.
COLD_SIGNAL_GAP_SECONDS = 1.2


def test_warm_and_cold_shutdowns_mid_job_lose_no_job_and_never_run_one_twice_at_once(
    chaos_redis, worker_pool, chaos_receivers, full_size, report
):
    rounds = 5 if full_size else 1
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    signals = (chaos_receivers.work_high, chaos_receivers.work_default, chaos_receivers.work_low)
    worker_pool.start_many(chaos_redis, KINDS[:2])

    def job(n: int) -> list[str]:
        long = n % 4 == 0  # on each queue in turn: n % 3 picks the queue
        tag = f"shutdown-{n}-long" if long else f"shutdown-{n}"
        first = LONG_FIRST_RUN_SECONDS if long else HOLD_SECONDS
        return send(signals[n % 3], [tag], hold_seconds=HOLD_SECONDS, first_run_hold_seconds=first)

    def worker_mid_job(long: bool):
        """A worker running a short job; when `long`, a long first run that began under a second ago,
        so a cold shutdown (two signals, over a second apart) catches it mid-way."""
        for proc in worker_pool.alive():
            for pid in process_tree(proc.pid):
                tag = connection.get(running_key(pid))
                if tag is None:
                    continue
                if not long and not tag.decode().endswith("-long"):
                    return proc, tag.decode()
                runs = Ledger.read(connection).runs.get(tag.decode(), [])
                if (
                    tag.decode().endswith("-long")
                    and len(runs) == 1
                    and redis_time(connection) - runs[0].start < 1
                ):
                    return proc, tag.decode()
        return None

    feeder = Feeder(job, interval_seconds=0.3)
    feeder.start()
    warm_tags: list[str] = []
    cold_tags: list[str] = []
    try:
        for number in range(2 * rounds):
            cold = number % 2 == 1
            victim, tag = wait_until(
                lambda cold=cold: worker_mid_job(long=cold),
                timeout=60,
                what="a worker in the middle of a job",
            )
            pids = process_tree(victim.pid)
            victim.signal(signal.SIGTERM)
            if cold:
                gap_from = time.monotonic()
                wait_until(
                    lambda gap_from=gap_from: time.monotonic() - gap_from > COLD_SIGNAL_GAP_SECONDS,
                    timeout=5,
                    what="rq's one-second gap between two shutdown signals",
                )
                victim.signal(signal.SIGTERM)
            code = victim.wait(30)
            log = victim.log_path.read_text(errors="replace")
            assert code == 0, f"exit code {code}:\n{log[-3000:]}"
            wait_until(
                lambda pids=pids: not any(is_running(p) for p in pids), timeout=10, what="its processes"
            )
            # a job that ended before the second signal made the shutdown a warm one
            (cold_tags if cold and "interrupting the current job" in log else warm_tags).append(tag)
            worker_pool.start(chaos_redis, KINDS[(number + 2) % len(KINDS)])
        sent = feeder.stop()
        ledger = wait_for_all(connection, sent, timeout=120, what="every job of the stream to complete")
    finally:
        if feeder.is_alive():
            feeder.stop()
    ledger = Ledger.read(connection)
    overlapping = ledger.overlapping({})  # for the message only: runs that never ended count as ongoing
    report(
        Outcome.of_stream(
            "warm/cold shutdown mid-job",
            ledger,
            sent,
            began=began,
            note=f"{len(warm_tags)} warm + {len(cold_tags)} cold",
        )
    )
    assert ledger.missing(sent) == []
    # warm: the job the worker was running finished there, once
    for tag in warm_tags:
        assert (ledger.started[tag], ledger.ended[tag]) == (1, 1), tag
    # cold: the job was cut off and ran again, to its end, once
    assert cold_tags, "no cold shutdown caught a job mid-way"
    for tag in cold_tags:
        assert ledger.started[tag] >= 2 and ledger.ended[tag] == 1, (
            tag,
            ledger.started[tag],
            ledger.ended[tag],
        )
    # A rerun starts as soon as the job is back on its queue, so the time we see a process gone is
    # too late a bound for its death: the authority is the rerun's own look, at its start, at whether
    # the process of the run before it is still alive (`ledger.overlaps`).
    assert ledger.overlaps == set(), (sorted(ledger.overlaps), overlapping)
    assert failed_count(connection) == 0, worker_pool.logs()[-5000:]
    connection.close()
