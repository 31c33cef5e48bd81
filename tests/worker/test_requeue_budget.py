"""A failed job requeued by hand gets a fresh retry budget, however it was requeued; its history stays."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import JobStatus

from tests.worker import jobs
from tests.worker.retry_support import FAST, attempts, enqueue, run_until_settled
from worker import Backoff, FailureRegistry

ONE_RETRY = Backoff(max_retries=1, base=FAST.base, jitter="none")


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def fail_for_good(queue):
    job = enqueue(queue, jobs.always_fail, policy=ONE_RETRY)
    assert run_until_settled([queue], job) == JobStatus.FAILED
    assert [record["outcome"] for record in attempts(job)] == ["retrying", "failed"]
    return job


def test_djangos_rq_requeue_button_gives_a_fresh_budget(queue):
    # Given a job that used its one retry and failed for good
    job = fail_for_good(queue)
    # When it is requeued the way django-rq's Requeue button does it (rq's own registry requeue)
    queue.failed_job_registry.requeue(job.id)
    # Then it is retried once more before failing again, and the first run's history is kept
    assert run_until_settled([queue], job) == JobStatus.FAILED
    assert [record["outcome"] for record in attempts(job)] == ["retrying", "failed", "retrying", "failed"]


def test_failure_registry_requeue_gives_a_fresh_budget(connection, queue):
    job = fail_for_good(queue)
    FailureRegistry(queue).requeue(job.id)
    assert run_until_settled([queue], job) == JobStatus.FAILED
    assert [record["outcome"] for record in attempts(job)] == ["retrying", "failed", "retrying", "failed"]
