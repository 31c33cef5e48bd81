"""What a monitoring tool sees of our workers is what it sees of rq's own, after the same jobs.

`rq info`, django-rq's stats view and its Prometheus collector read a worker through rq's `Worker`
(`Worker.all`, `Worker.find_by_key`): its state, its job counters and its total working time; and
they read the queue's registries. Each of our classes runs the same burst as its rq counterpart
(`tests.support.upstream`, rq's classes without their pub/sub exit hang) and leaves the same.
"""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.worker import Worker as RqBaseWorker
from rq.worker_registration import get_keys

from tests.support.round_trips import fail, noop
from tests.support.upstream import RqSimpleWorker, RqWorker
from worker import RetryWorker, SimpleRetryWorker
from worker.prefork import PreforkRetryWorker

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
