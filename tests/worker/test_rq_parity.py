"""What a monitoring tool sees of our workers is what it sees of rq's own, after the same jobs.

`rq info`, django-rq's stats view and its Prometheus collector read a worker through rq's `Worker`
(`Worker.all`, `Worker.count`, `Worker.find_by_key`): its state, its job counters and its total
working time; and they read the queue's registries. (The collector needs prometheus_client, which
is not one of our dependencies, so its reads are repeated here rather than the collector run.)
Each of our classes runs the same jobs as its rq counterpart (`tests.support.upstream`, rq's
classes without their pub/sub exit hang) and leaves the same.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import redis
from rq import Queue
from rq.worker import Worker as RqBaseWorker
from rq.worker_registration import get_keys

from tests.support.processes import start_worker
from tests.support.round_trips import fail, noop
from tests.support.upstream import RqSimpleWorker, RqWorker
from tests.support.waiting import wait_until
from worker import JobGate, PreforkRetryWorker, RetryWorker, SimpleRetryWorker
from worker.serializers import JSONSerializer

#: Each class of ours, with the rq class it stands in for.
COUNTERPARTS = [
    pytest.param(SimpleRetryWorker, RqSimpleWorker, id="SimpleRetryWorker"),
    pytest.param(RetryWorker, RqWorker, id="RetryWorker"),
    pytest.param(PreforkRetryWorker, RqWorker, id="PreforkRetryWorker"),
]


def observed(worker_class, connection, queue_name: str, *, burst: bool, max_jobs: int | None) -> dict:
    """Run [noop, fail, noop, noop] with `worker_class`; what rq's readers see of it afterwards."""
    queue = Queue(queue_name, connection=connection)
    for func in (noop, fail, noop, noop):
        queue.enqueue(func)
    worker = worker_class([queue], connection=connection)
    worker.work(burst=burst, max_jobs=max_jobs, logging_level="CRITICAL")
    seen = RqBaseWorker.find_by_key(worker.key, connection=connection)
    assert seen is not None, f"{worker_class.__name__}: its hash is gone"
    return {
        "state": seen.get_state(),
        "successful_job_count": seen.successful_job_count,
        "failed_job_count": seen.failed_job_count,
        "has_working_time": seen.total_working_time > 0,
        "current_job": seen.get_current_job_id(),
        "fields": {key.decode() for key in connection.hkeys(worker.key)},
        "registered": worker.key in get_keys(connection=connection),
        "in_queue_workers": worker.key in get_keys(queue),
        "queued": queue.count,
        "started": queue.started_job_registry.count,
        "finished": queue.finished_job_registry.count,
        "failed": queue.failed_job_registry.count,
        "intermediate": connection.llen(queue.intermediate_queue_key),
    }


@pytest.mark.parametrize("ours, theirs", COUNTERPARTS)
@pytest.mark.parametrize(
    "burst, max_jobs",
    [(True, 2), (False, 3), (True, None)],
    ids=["burst-max_jobs-2", "max_jobs-3", "burst-to-empty"],
)
def test_a_worker_leaves_what_rqs_own_class_leaves(redis_url, ours, theirs, burst, max_jobs):
    # Given four jobs (one fails), run by rq's class and by ours, each on its own queue
    connection = redis.Redis.from_url(redis_url)
    expected = observed(theirs, connection, "theirs", burst=burst, max_jobs=max_jobs)
    actual = observed(ours, connection, "ours", burst=burst, max_jobs=max_jobs)

    # Then rq's readers see ours as they see rq's: the same state (idle), counters, fields and
    # registrations, and the same jobs in the same registries
    assert expected["state"] == "idle"
    assert actual == expected
    connection.close()


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("worker.SimpleRetryWorker", "tests.support.upstream.RqSimpleWorker"),
        ("worker.RetryWorker", "tests.support.upstream.RqWorker"),
        ("worker.PreforkRetryWorker", "tests.support.upstream.RqWorker"),
    ],
    ids=["SimpleRetryWorker", "RetryWorker", "PreforkRetryWorker"],
)
def test_rq_info_shows_a_running_worker_of_ours_as_one_of_rqs(redis_url, tmp_path, ours, theirs):
    # Given an `rq worker` of rq's class and one of ours, each done with a job that succeeded and
    # one that failed, and waiting for more
    connection = redis.Redis.from_url(redis_url)
    workers = {}
    try:
        for role, worker_class in (("theirs", theirs), ("ours", ours)):
            queue = Queue(role, connection=connection)
            queue.enqueue(noop)
            queue.enqueue(fail)
            workers[role] = start_worker(
                redis_url,
                [role],
                tmp_path=tmp_path,
                worker_class=worker_class,
                name=role,
                extra_args=["-n", f"parity-{role}"],
            )

        def settled(role: str) -> bool:
            key = f"rq:worker:parity-{role}"
            # rq's `find_by_key` sends EXISTS, then SREMs the key from rq:workers if it was missing: a
            # worker registering between the two is unregistered for good, and `Worker.all` never lists
            # it (docs/compat.md). So it is called only once the worker's hash exists.
            if not connection.exists(key):
                return False
            seen = RqBaseWorker.find_by_key(key, connection=connection)
            return (
                seen is not None
                and seen.get_state() == "idle"
                and seen.successful_job_count == 1
                and seen.failed_job_count == 1
            )

        for role in workers:
            wait_until(
                lambda role=role: settled(role), timeout=30, what=f"the {role} worker to be idle after 2 jobs"
            )

        # When `rq info` lists the workers
        info = subprocess.run(
            [sys.executable, "-m", "rq.cli", "info", "-u", redis_url, "-W"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

        # Then each shows the same way (idle, 1 finished, 1 failed), but for its name, queue,
        # address and pid
        lines = {
            role: re.sub(r"\(.*?\)", "(...)", line).replace(role, "X")
            for role in workers
            for line in info.splitlines()
            if f"parity-{role}" in line
        }
        assert lines["ours"] == lines["theirs"] == "parity-X (...): idle X. jobs: 1 finished, 1 failed", info

        # And what django-rq's Prometheus collector (`django_rq.contrib.prometheus`) and its stats
        # view (`Worker.count(queue=...)`) read of each is the same
        def metrics(role: str) -> tuple | None:
            listed = [w for w in RqBaseWorker.all(connection=connection) if w.name == f"parity-{role}"]
            if len(listed) != 1:
                return None  # not listed: an assertion that shows what was seen, not an unpacking error
            (seen,) = listed
            queue = Queue(role, connection=connection)
            return (
                seen.get_state(),
                [name.replace(role, "X") for name in seen.queue_names()],
                seen.successful_job_count,
                seen.failed_job_count,
                seen.total_working_time > 0,
                RqBaseWorker.count(queue=queue),
                (queue.count, queue.started_job_registry.count, queue.finished_job_registry.count),
                queue.failed_job_registry.count,
            )

        expected = ("idle", ["X"], 1, 1, True, 1, (0, 0, 1), 1)
        wait_until(
            lambda: metrics("ours") == metrics("theirs") == expected,
            timeout=10,
            what="both workers listed by Worker.all: idle, 1 finished, 1 failed, the same registries",
        )
        assert metrics("ours") == metrics("theirs") == expected
        assert "idle" in lines["ours"], info
    finally:
        for proc in workers.values():
            proc.stop()
        connection.close()


@pytest.mark.parametrize("ours, theirs", COUNTERPARTS)
def test_a_job_the_gate_refuses_counts_as_failed_as_rq_counts_one_it_cannot_import(redis_url, ours, theirs):
    # Given a job naming a function that does not exist, then a good job: rq's class tries to import it
    # and fails the job; ours, behind a job gate allowing only the good function, refuses it at once
    connection = redis.Redis.from_url(redis_url)
    gate = JobGate((f"{noop.__module__}.noop",))
    counts = []
    for make_worker, name in (
        (lambda queue: theirs([queue], connection=connection, serializer=JSONSerializer), "theirs"),
        (lambda queue: ours([queue], connection=connection, job_gate=gate), "ours"),
    ):
        queue = Queue(name, connection=connection, serializer=JSONSerializer)
        queue.enqueue_call(f"{noop.__module__}.no_such_function")
        queue.enqueue(noop)
        worker = make_worker(queue)
        worker.work(burst=True, logging_level="CRITICAL")
        seen = RqBaseWorker.find_by_key(worker.key, connection=connection)
        assert seen is not None
        counts.append((seen.failed_job_count, seen.successful_job_count, queue.failed_job_registry.count))

    # Then the worker's counters say what rq's say (django-rq's Prometheus failed-jobs total included)
    expected, actual = counts
    assert expected == (1, 1, 1)
    assert actual == expected
    connection.close()
