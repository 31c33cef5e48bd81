"""A job retried many times keeps a bounded history: its first attempt, its last 20, and a count of the rest.

Real Redis, real workers. A policy with many retries (anyone who can write to Redis can set one) must
not grow the job's hash with every attempt, and what reads the history still counts every attempt.
"""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import JobStatus

from tests.worker import jobs
from tests.worker.retry_support import attempts, enqueue, run_until_settled, runs
from worker import Backoff
from worker.retries.attempts import (
    BUDGET_START_META_KEY,
    DROPPED_META_KEY,
    KEEP_FIRST_ATTEMPTS,
    KEEP_LAST_ATTEMPTS,
    Attempt,
    append_attempt,
    attempt_count,
    retries_used,
)
from worker.retries.failures import FailureRegistry
from worker.workers import RetryWorker, SimpleRetryWorker

KEPT = KEEP_FIRST_ATTEMPTS + KEEP_LAST_ATTEMPTS


@pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker])
def test_a_job_retried_thirty_times_keeps_its_first_and_last_twenty_attempts(connection, worker_class):
    # Given a job that always fails, with a policy of 30 quick retries
    queue = Queue("default", connection=connection)
    job = enqueue(queue, jobs.always_fail, policy=Backoff(max_retries=30, base=0.01, factor=1, jitter="none"))

    # When workers run it until it fails for good
    status = run_until_settled([queue], job, worker_class=worker_class, timeout=60)

    # Then it ran 31 times, but only the first and the last 20 attempts are stored ...
    assert status == JobStatus.FAILED
    assert runs(connection, job) == 31
    records = attempts(job)
    assert len(records) == KEPT == 21
    assert [r["attempt"] for r in records] == [1, *range(12, 32)]
    assert records[0]["message"] == "run 1 always fails"
    assert records[-1]["outcome"] == "failed" and records[-1]["message"] == "run 31 always fails"
    assert job.meta[DROPPED_META_KEY] == 10
    # ... and the failed registry counts every attempt, saying how many are not kept
    [failure] = FailureRegistry(queue).list()
    assert (failure.attempt_count, failure.attempts_dropped, len(failure.attempts)) == (31, 10, 21)


def record(outcome: str) -> Attempt:
    return Attempt(attempt=0, started_at=None, ended_at="", worker="w", outcome=outcome)  # type: ignore[arg-type]


def test_a_dropped_failed_record_still_ends_its_budget():
    # Given a job that failed for good on attempt 3, was requeued (without a budget mark), and retried on
    meta: dict = {}
    for outcome in ["retrying", "retrying", "failed", *["retrying"] * 30]:
        append_attempt(meta, record(outcome))

    # Then the "failed" record is no longer stored, but the budget still counts from it
    assert attempt_count(meta) == 33
    assert [r["outcome"] for r in meta["attempts"]].count("failed") == 0
    assert meta[BUDGET_START_META_KEY] == 3
    assert retries_used(meta) == 30


def test_counts_written_by_someone_else_are_read_as_nothing():
    meta = {"attempts": [record("retrying").to_dict()], DROPPED_META_KEY: "lots", BUDGET_START_META_KEY: -5}
    assert attempt_count(meta) == 1
    assert retries_used(meta) == 1
