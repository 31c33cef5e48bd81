"""Redis behind Sentinel: workers of each class start through it and follow both kinds of failover.

A master, a replica and three sentinels on loopback (`tests.support.sentinel`), and real `rq worker`
processes configured as rq documents it (``SENTINEL = {"INSTANCES": ..., "MASTER_NAME": ...}`` in a
settings module given with ``-c``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.processes import REPO_ROOT, Proc
from tests.support.sentinel import MASTER_NAME, SentinelSetup
from tests.support.waiting import wait_until
from tests.worker import crash_jobs

WORKERS = {
    "retry": "tests.worker.crash_jobs.FastRetryWorker",
    "simple": "tests.worker.crash_jobs.FastSimpleRetryWorker",
    "prefork": "tests.worker.crash_jobs.FastPreforkRetryWorker",
}


@pytest.fixture
def setup() -> Iterator[SentinelSetup]:
    with SentinelSetup() as started:
        yield started


def start_sentinel_workers(setup: SentinelSetup, tmp_path: Path) -> dict[str, Proc]:
    """One worker of each class, each on its own queue, configured through Sentinel only."""
    (tmp_path / "rq_sentinel_settings.py").write_text(
        f"SENTINEL = {{'INSTANCES': {setup.addresses!r}, 'MASTER_NAME': {MASTER_NAME!r}, "
        "'SOCKET_TIMEOUT': 5}\n"
    )
    env = {"PYTHONPATH": f"{REPO_ROOT}:{tmp_path}"}
    return {
        queue: Proc(
            [*_rq_worker(), "-c", "rq_sentinel_settings", "-w", worker_class, queue],
            env=env,
            log_path=tmp_path / f"worker-{queue}.log",
        )
        for queue, worker_class in WORKERS.items()
    }


def _rq_worker() -> list[str]:
    return [sys.executable, "-m", "rq.cli", "worker"]


def master(setup: SentinelSetup) -> redis.Redis:
    """A fresh client of the current master, through the sentinels."""
    return Sentinel(setup.addresses, socket_timeout=2).master_for(MASTER_NAME, socket_timeout=2)


def enqueue_everywhere(setup: SentinelSetup) -> list[Job]:
    def enqueued() -> list[Job] | None:
        try:
            connection = master(setup)
            return [Queue(name, connection=connection).enqueue(crash_jobs.quick) for name in WORKERS]
        except redis.RedisError:
            return None

    return wait_until(enqueued, timeout=30, what="the master to take jobs")


def all_finished(setup: SentinelSetup, jobs: list[Job]) -> bool:
    try:
        connection = master(setup)
        statuses = [Job.fetch(job.id, connection=connection).get_status() for job in jobs]
        return all(status == JobStatus.FINISHED for status in statuses)
    except redis.RedisError:
        return False


def assert_alive(workers: dict[str, Proc]) -> None:
    for name, worker in workers.items():
        assert worker.alive(), f"worker {name} died:\n{worker.output()[-3000:]}"
        assert "unhandled exception" not in worker.output(), worker.output()[-3000:]


def test_idle_workers_follow_a_killed_master_and_its_return_as_a_replica(setup, tmp_path):
    # Given a worker of each class, started through Sentinel, that has run a job
    workers = start_sentinel_workers(setup, tmp_path)
    try:
        first = enqueue_everywhere(setup)
        wait_until(lambda: all_finished(setup, first), timeout=30, what="the first jobs to finish")

        # When the master is killed and Sentinel promotes the replica
        old, promoted_at = setup.kill_master()
        after = enqueue_everywhere(setup)

        # Then the idle workers take jobs on the new master within 5 s of the promotion
        wait_until(lambda: all_finished(setup, after), timeout=30, what="the jobs placed after the failover")
        assert time.monotonic() - promoted_at < 5.0

        # And when the old master comes back (as a replica), they go on
        old.start()
        setup.wait_replica_online(old)
        last = enqueue_everywhere(setup)
        wait_until(lambda: all_finished(setup, last), timeout=10, what="the jobs placed after its return")
        assert_alive(workers)
        connection = master(setup)
        runs = [int(connection.get(crash_jobs.key(job.id, "runs")) or 0) for job in first + after + last]
        assert runs == [1] * 9  # each job ran once
    finally:
        for worker in workers.values():
            worker.stop()


def test_idle_workers_follow_a_planned_failover_within_a_second(setup, tmp_path):
    workers = start_sentinel_workers(setup, tmp_path)
    try:
        first = enqueue_everywhere(setup)
        wait_until(lambda: all_finished(setup, first), timeout=30, what="the first jobs to finish")

        old, switched_at = setup.planned_failover()
        after = enqueue_everywhere(setup)

        wait_until(lambda: all_finished(setup, after), timeout=10, what="the jobs placed after the failover")
        assert time.monotonic() - switched_at < 2.0  # without the +switch-master watcher: ~10 s
        assert "switched" in workers["retry"].output()
        assert_alive(workers)
    finally:
        for worker in workers.values():
            worker.stop()
