"""Retries as a user sees them: a failing job with a policy is scheduled, retried, then succeeds or fails."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue, Retry
from rq.job import JobStatus
from rq.results import Result

from tests.worker import jobs
from tests.worker.retry_support import FAST, SLOW, attempts, enqueue, run_until_settled, runs, timestamp
from worker import Backoff
from worker.exceptions import WorkerCrashed
from worker.retries.attempts import ATTEMPTS_META_KEY
from worker.retries.handler import retry_or_fail
from worker.retries.scheduler import pending_retries
from worker.workers import RetryWorker, SimpleRetryWorker

both_workers = pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker])


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def server_now(connection) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1_000_000


@both_workers
def test_a_failing_job_with_a_policy_is_scheduled_where_rq_shows_it(connection, queue, worker_class):
    # Given a job whose policy retries Flaky errors
    job = enqueue(queue, jobs.always_fail, policy=SLOW)
    # When a worker runs it once and it fails
    worker = worker_class([queue], connection=connection)
    worker.work(burst=True)
    # Then it waits in rq's scheduled registry (and our index), status SCHEDULED, not failed
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.id in queue.scheduled_job_registry
    assert job.id not in queue.failed_job_registry
    due = queue.scheduled_job_registry.get_scheduled_time(job).timestamp()
    assert pending_retries(connection, "default") == {job.id: pytest.approx(due, abs=1e-5)}
    # And the attempt is on record, with the delay the policy chose
    (record,) = attempts(job)
    assert record["attempt"] == 1
    assert record["outcome"] == "retrying"
    assert record["worker"] == worker.name
    assert record["exc_type"] == "tests.worker.jobs.Flaky"
    assert record["message"] == "run 1 always fails"
    assert "raise Flaky" in record["traceback"]
    assert record["delay"] == SLOW.base
    assert (
        timestamp(record["started_at"])
        <= timestamp(record["ended_at"])
        <= timestamp(record["retry_at"])
        <= due
    )
    assert due >= timestamp(record["ended_at"]) + SLOW.base


@both_workers
def test_a_retried_job_that_succeeds_gets_a_final_record_and_never_started_early(
    connection, queue, worker_class
):
    job = enqueue(queue, jobs.fail_times, 2)
    assert run_until_settled([queue], job, worker_class=worker_class) == JobStatus.FINISHED
    records = attempts(job)
    assert [r["outcome"] for r in records] == ["retrying", "retrying", "succeeded"]
    assert [r["attempt"] for r in records] == [1, 2, 3]
    assert [r.get("delay") for r in records] == [0.05, 0.1, None]
    assert runs(connection, job) == 3
    for earlier, later in zip(records, records[1:], strict=False):
        assert timestamp(later["started_at"]) >= timestamp(earlier["retry_at"]), "a retry started early"
    assert job.latest_result().type == Result.Type.SUCCESSFUL


@both_workers
def test_a_job_out_of_retries_fails_exactly_as_rq_would(connection, queue, worker_class):
    job = enqueue(queue, jobs.always_fail, policy=Backoff(max_retries=2, base=0.01, jitter="none"))
    assert run_until_settled([queue], job, worker_class=worker_class) == JobStatus.FAILED
    assert runs(connection, job) == 3
    assert job.id in queue.failed_job_registry
    assert job.id not in queue.scheduled_job_registry
    assert pending_retries(connection, "default") == {}
    result = job.latest_result()
    assert result.type == Result.Type.FAILED
    assert "Flaky: run 3 always fails" in result.exc_string
    assert [r["outcome"] for r in attempts(job)] == ["retrying", "retrying", "failed"]


def test_a_permanent_error_is_never_retried_whatever_the_policy(connection, queue):
    job = enqueue(queue, jobs.fail_permanently, policy=Backoff(retry_on=[Exception]))
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert job.get_status() == JobStatus.FAILED
    (record,) = attempts(job)
    assert record["outcome"] == "failed"
    assert record["exc_type"] == "worker.exceptions.PermanentJobError"


def test_an_exception_the_policy_gives_up_on_fails_at_once(connection, queue):
    policy = Backoff(give_up_on=[jobs.NotWorthRetrying], base=0.01)
    job = enqueue(queue, jobs.fail_not_worth_retrying, policy=policy)
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert job.get_status() == JobStatus.FAILED
    assert [r["outcome"] for r in attempts(job)] == ["failed"]


def test_a_job_without_a_policy_fails_as_in_plain_rq_with_no_extra_meta(connection, queue):
    job = enqueue(queue, jobs.always_fail, policy=None)
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert job.get_status() == JobStatus.FAILED
    assert job.id in queue.failed_job_registry
    assert job.latest_result().type == Result.Type.FAILED
    job.refresh()
    assert job.meta == {}


def test_rqs_own_retry_still_works_for_jobs_without_a_policy(connection, queue):
    job = queue.enqueue(jobs.always_fail, retry=Retry(max=1))
    SimpleRetryWorker([queue], connection=connection).work(
        burst=True
    )  # runs it, rq requeues it, runs it again
    assert runs(connection, job) == 2
    assert job.get_status() == JobStatus.FAILED
    job.refresh()
    assert ATTEMPTS_META_KEY not in job.meta


def test_a_job_that_never_fails_gets_no_attempt_records(connection, queue):
    job = enqueue(queue, jobs.succeed)
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert job.get_status() == JobStatus.FINISHED
    assert attempts(job) == []


def test_retry_or_fail_schedules_a_retry_on_the_redis_clock(connection, queue):
    # Given a job with a policy whose worker died mid-attempt
    job = enqueue(queue, jobs.always_fail)
    worker = SimpleRetryWorker([queue], connection=connection)
    before = server_now(connection)
    # When the recovery helper hands it to retry_or_fail
    outcome = retry_or_fail(worker, job, queue, exc=WorkerCrashed("horse died"), started_at=None)
    # Then it is scheduled in rq's registry and our index, the policy's delay from now, one attempt on record
    assert outcome == "retrying"
    assert job.get_status() == JobStatus.SCHEDULED
    due = queue.scheduled_job_registry.get_scheduled_time(job).timestamp()
    assert before + FAST.base <= due <= server_now(connection) + FAST.base
    assert pending_retries(connection, "default") == {job.id: pytest.approx(due, abs=1e-5)}
    (record,) = attempts(job)
    assert record["outcome"] == "retrying"
    assert record["exc_type"] == "worker.exceptions.WorkerCrashed"
    assert record["delay"] == FAST.base


def test_a_retry_is_due_its_delay_after_the_attempt_ended_not_after_the_failure_was_handled(
    connection, queue
):
    # Given an attempt that ended 30 s ago (a crash found late), under a 60 s policy
    job = enqueue(queue, jobs.always_fail, policy=SLOW)
    ended_at = datetime.now(timezone.utc) - timedelta(seconds=30)
    worker = SimpleRetryWorker([queue], connection=connection)
    # When it is handed to retry_or_fail now
    retry_or_fail(worker, job, queue, exc=WorkerCrashed("horse died"), started_at=None, ended_at=ended_at)
    # Then it is due 60 s after the attempt ended (30 s from now), and the record says so
    due = queue.scheduled_job_registry.get_scheduled_time(job).timestamp()
    assert ended_at.timestamp() + 60 <= due < ended_at.timestamp() + 90
    (record,) = attempts(job)
    assert timestamp(record["retry_at"]) == pytest.approx(ended_at.timestamp() + 60, abs=1e-5)


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
        crash = WorkerCrashed("horse died")
        outcome = retry_or_fail(worker, job, queue, exc=crash, started_at=None, pipeline=pipe)
        assert job.get_status() == JobStatus.QUEUED  # nothing sent yet
        pipe.execute()
    assert outcome == "failed"
    assert job.get_status() == JobStatus.FAILED
    assert job.id in queue.failed_job_registry
    assert job.latest_result().type == Result.Type.FAILED
    assert [a["outcome"] for a in attempts(job)] == ["failed"]
