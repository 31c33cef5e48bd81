"""Jobs that cannot be loaded fail at once, naming the job and what failed to load; the worker goes on."""

from __future__ import annotations

import zlib

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus

from tests.worker import jobs
from tests.worker.retry_support import SLOW, attempts, enqueue, runs
from worker.workers import RetryWorker, SimpleRetryWorker

both_workers = pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker])


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def failure_text(job: Job) -> str:
    job.refresh()
    return job.latest_result().exc_string


@both_workers
@pytest.mark.parametrize(
    "func_name",
    ["tests.worker.jobs.no_such_function", "no_such_module.no_such_function"],
    ids=["missing function", "missing module"],
)
def test_an_unimportable_function_fails_at_once_and_the_worker_runs_the_next_job(
    connection, queue, worker_class, func_name
):
    # Given a job (with a generous retry policy) whose function does not exist, then a good job
    broken = enqueue(queue, func_name)
    good = enqueue(queue, jobs.succeed)
    # When a worker works the queue
    worker_class([queue], connection=connection).work(burst=True)
    # Then the broken job failed at once with an error naming it and the function, not retried
    assert broken.get_status() == JobStatus.FAILED
    assert broken.id not in queue.scheduled_job_registry
    text = failure_text(broken)
    assert f"JobLoadError: Job {broken.id}: cannot load function '{func_name}'" in text
    (record,) = attempts(broken)
    assert record["outcome"] == "failed"
    assert record["exc_type"] == "worker.exceptions.JobLoadError"
    # And the worker went on with the next job
    assert good.get_status() == JobStatus.FINISHED


@both_workers
def test_undecodable_job_data_fails_at_once(connection, queue, worker_class):
    broken = enqueue(queue, jobs.succeed)
    connection.hset(broken.key, "data", zlib.compress(b"not a pickle"))
    good = enqueue(queue, jobs.succeed)
    worker_class([queue], connection=connection).work(burst=True)
    assert broken.get_status() == JobStatus.FAILED
    assert f"JobLoadError: Job {broken.id}: cannot load its data" in failure_text(broken)
    assert good.get_status() == JobStatus.FINISHED


def test_a_load_error_is_not_retried_by_rqs_own_retry_either(connection, queue):
    broken = queue.enqueue("tests.worker.jobs.no_such_function", retry=Retry(max=3))
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert broken.get_status() == JobStatus.FAILED
    assert f"Job {broken.id}: cannot load function" in failure_text(broken)


def test_an_import_error_raised_inside_the_function_is_an_ordinary_retryable_failure(connection, queue):
    job = enqueue(queue, jobs.raise_import_error_inside, policy=SLOW)
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    assert runs(connection, job) == 1
    assert job.get_status() == JobStatus.SCHEDULED
    (record,) = attempts(job)
    assert record["exc_type"] == "ImportError"


@pytest.mark.parametrize("queue_names", [["default"], ["high", "default"]], ids=["one queue", "two queues"])
def test_a_job_hash_rq_cannot_read_back_fails_that_job_not_the_worker(connection, queue_names):
    # Given a job whose stored hash is corrupt (rq cannot even fetch it), then a good job
    queues = [Queue(name, connection=connection) for name in queue_names]
    queue = queues[-1]
    broken = enqueue(queue, jobs.succeed)
    connection.hset(broken.key, "status", "not-a-status")
    good = enqueue(queue, jobs.succeed)
    # When a worker works the queues
    SimpleRetryWorker(queues, connection=connection).work(burst=True)
    # Then the broken job is in the failed registry with an error naming it, and the good job ran
    assert broken.id in queue.failed_job_registry
    assert connection.hget(broken.key, "status") == b"failed"
    text = zlib.decompress(connection.hget(broken.key, "exc_info")).decode()
    assert f"JobLoadError: Job {broken.id}: cannot load its stored job hash" in text
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert good.get_status() == JobStatus.FINISHED
