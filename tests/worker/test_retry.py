"""Retries as a user sees them: a failing job with a policy is scheduled, retried on time, then fails for good."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import JobStatus

from tests.worker import jobs
from tests.worker.retry_support import FAST, attempts, enqueue
from worker import Backoff
from worker.exceptions import WorkerCrashed
from worker.retry import retry_or_fail
from worker.scheduler import pending_retries
from worker.workers import SimpleRetryWorker


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def test_retry_or_fail_schedules_a_retry_on_the_redis_clock(connection, queue):
    # Given a job with a policy whose worker died mid-attempt
    job = enqueue(queue, jobs.always_fail)
    worker = SimpleRetryWorker([queue], connection=connection)
    before = float(".".join(map(str, connection.time())))
    # When the recovery helper hands it to retry_or_fail
    outcome = retry_or_fail(worker, job, queue, exc=WorkerCrashed("horse died"), started_at=None)
    # Then it is scheduled in rq's registry and our index, due base delay later, with one attempt recorded
    assert outcome == "retrying"
    assert job.get_status() == JobStatus.SCHEDULED
    due = queue.scheduled_job_registry.get_scheduled_time(job).timestamp()
    assert before + FAST.base <= due < before + FAST.base + 1
    assert pending_retries(connection, "default") == {job.id: pytest.approx(due, abs=1e-5)}
    (record,) = attempts(job)
    assert record["outcome"] == "retrying"
    assert record["exc_type"] == "worker.exceptions.WorkerCrashed"
    assert record["delay"] == FAST.base


def test_retry_or_fail_leaves_jobs_without_a_policy_to_rq(connection, queue):
    job = enqueue(queue, jobs.always_fail, policy=None)
    worker = SimpleRetryWorker([queue], connection=connection)
    assert retry_or_fail(worker, job, queue, exc=WorkerCrashed("horse died"), started_at=None) is None
    assert job.get_status() == JobStatus.QUEUED
    assert attempts(job) == []


def test_retry_or_fail_with_a_pipeline_waits_for_the_caller_to_execute_it(connection, queue):
    job = enqueue(queue, jobs.always_fail, policy=Backoff(max_retries=0))
    worker = SimpleRetryWorker([queue], connection=connection)
    with connection.pipeline() as pipe:
        outcome = retry_or_fail(
            worker, job, queue, exc=WorkerCrashed("horse died"), started_at=None, pipeline=pipe
        )
        assert job.get_status() == JobStatus.QUEUED  # nothing sent yet
        pipe.execute()
    assert outcome == "failed"
    assert job.get_status() == JobStatus.FAILED
    assert job.id in queue.failed_job_registry
    assert [a["outcome"] for a in attempts(job)] == ["failed"]
