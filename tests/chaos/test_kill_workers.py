"""kill -9 a worker mid-job, again and again, under a steady stream: every job runs, never twice at once.

Two workers of different kinds (fork per job, simple, prefork) serve high, default and low while a
feeder commits one signal every 0.15 s; each job holds its worker for 0.25 s. Whenever a worker is
in the middle of a job it is killed with SIGKILL (by pid) and a worker of the next kind replaces it.
Between kills the stream goes on: the replacement is up and five more jobs have completed. The
killed job is found by its expired 5 s lease and retried by a live worker.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.chaos.harness import (
    Feeder,
    Ledger,
    Outcome,
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
HOLD_SECONDS = 0.25
FEED_INTERVAL_SECONDS = 0.15
JOBS_BETWEEN_KILLS = 5
#: A horse dies with its worker (PR_SET_PDEATHSIG): a job ending later than this after the kill outlived it.
HORSE_DEATH_SECONDS = 0.2


def test_workers_killed_mid_job_lose_no_job_and_never_run_one_twice_at_once(
    chaos_redis, worker_pool, chaos_receivers, full_size, report
):
    kills = 20 if full_size else 3
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    signals = (chaos_receivers.work_high, chaos_receivers.work_default, chaos_receivers.work_low)

    # Given two workers and a steady stream of jobs
    worker_pool.start_many(chaos_redis, KINDS[:2])
    feeder = Feeder(
        lambda n: send(signals[n % 3], [f"kill-{n}"], hold_seconds=HOLD_SECONDS),
        interval_seconds=FEED_INTERVAL_SECONDS,
    )
    feeder.start()
    deaths: dict[int, float] = {}  # pid -> Redis time by which it was gone
    killed_tags: list[str] = []

    def worker_mid_job():
        for proc in worker_pool.alive():
            for pid in process_tree(proc.pid):
                tag = connection.get(running_key(pid))
                if tag is not None:
                    return proc, tag.decode()
        return None

    try:
        # When, `kills` times, a worker in the middle of a job is killed with SIGKILL and replaced
        replacement = None
        for number in range(kills):
            # (the stream goes on between kills: the replacement is up and more jobs have completed)
            if replacement is not None:
                worker_pool.wait_ready(chaos_redis, replacement)
            done = sum(Ledger.read(connection).ended.values())
            wait_until(
                lambda done=done: sum(Ledger.read(connection).ended.values()) >= done + JOBS_BETWEEN_KILLS,
                timeout=60,
                what=f"{JOBS_BETWEEN_KILLS} more jobs to complete before the next kill",
            )
            victim, tag = wait_until(worker_mid_job, timeout=60, what="a worker in the middle of a job")
            pids = process_tree(victim.pid)
            killed_at = redis_time(connection)
            victim.kill()
            wait_until(
                lambda pids=pids: not any(is_running(pid) for pid in pids),
                timeout=10,
                what=f"worker {victim.pid} and its work horse to be gone",
            )
            gone_at = redis_time(connection)
            deaths.update(dict.fromkeys(pids, gone_at))
            # The work horse dies a moment after its worker: a job in its last instant may end first.
            # It was killed mid-job only if it had not ended (its retry waits for the lease to expire).
            ledger = Ledger.read(connection)
            if ledger.ended.get(tag, 0) == 0:
                killed_tags.append(tag)
            else:  # it ended in that moment, not later: no horse outlives its worker
                ends = [run.end for run in ledger.runs[tag] if run.pid in pids and run.end is not None]
                assert ends and max(ends) < killed_at + HORSE_DEATH_SECONDS, (tag, ends, killed_at)
            replacement = worker_pool.start(chaos_redis, KINDS[(number + 2) % len(KINDS)], wait=False)
        sent = feeder.stop()

        # Then every job sent runs to completion (the killed ones on another worker) ...
        ledger = wait_for_all(connection, sent, timeout=120, what="every job of the stream to complete")
    finally:
        if feeder.is_alive():
            feeder.stop()
    ledger = Ledger.read(connection)
    overlapping = ledger.overlapping(deaths)
    failed = sum(connection.zcard(f"rq:failed:{name}") for name in ("high", "default", "low"))
    report(
        Outcome.of_stream(
            "kill -9 worker mid-job",
            ledger,
            sent,
            began=began,
            overlaps=len(overlapping),
            note=f"{kills} kills, {len(killed_tags)} of them mid-job",
        )
    )
    assert ledger.missing(sent) == []
    # ... each killed job had started, was cut off, and ran again to its end ...
    assert set(killed_tags) <= set(sent)
    assert len(killed_tags) >= kills // 2, f"only {len(killed_tags)} of {kills} kills landed mid-job"
    for tag in killed_tags:
        assert ledger.started[tag] >= 2, f"{tag} was killed mid-job but never started again"
    # ... never while another run of it was under way ...
    assert overlapping == [], f"runs of one job at the same time: {overlapping[:5]}"
    assert ledger.overlaps == set()
    # ... and none failed: a crash is retried under the receiver's policy.
    assert failed == 0, worker_pool.logs()[-5000:]
    connection.close()
