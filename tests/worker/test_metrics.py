"""`worker.metrics`: counts in Redis, in the transaction that saves each outcome: exact, and no round trip."""

from __future__ import annotations

import pytest
import redis
from rq import Queue

from tests.support.round_trips import fail, noop, per_job
from tests.worker import jobs
from tests.worker.retry_support import enqueue, run_until_settled
from worker import Backoff, PreforkRetryWorker, RetryWorker, SimpleRetryWorker
from worker.keys import metrics as metrics_key
from worker.metrics import BUCKETS, SEP, JobMetrics, bucket_of


def counted(connection: redis.Redis, queue: str) -> dict[str, float]:
    return {
        field.decode().replace(SEP, "|"): float(value)
        for field, value in connection.hgetall(metrics_key(queue)).items()
    }


@pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker, PreforkRetryWorker])
def test_every_attempt_is_counted_once_by_outcome_with_its_run_time_and_wait(connection, worker_class):
    # Given a job that fails once then succeeds, and one that fails for good (one retry each)
    queue = Queue("counted", connection=connection)
    flaky = enqueue(queue, jobs.fail_times, 1, policy=Backoff(max_retries=1, base=0.0, jitter="none"))
    doomed = enqueue(queue, jobs.always_fail, policy=Backoff(max_retries=1, base=0.0, jitter="none"))

    # When workers counting metrics run them
    for job in (flaky, doomed):
        run_until_settled(
            [queue], job, worker_class=lambda *a, **k: worker_class(*a, job_metrics=JobMetrics(), **k)
        )

    # Then each attempt is counted once, under its function, with a run time and a queue wait
    fields = counted(connection, "counted")
    assert {key: value for key, value in fields.items() if "|attempts|" in key} == {
        "tests.worker.jobs.fail_times|attempts|retrying": 1,
        "tests.worker.jobs.fail_times|attempts|succeeded": 1,
        "tests.worker.jobs.always_fail|attempts|retrying": 1,
        "tests.worker.jobs.always_fail|attempts|exhausted": 1,
    }
    for function in ("fail_times", "always_fail"):
        for series in ("run", "wait"):
            buckets = [
                v for k, v in fields.items() if k.startswith(f"tests.worker.jobs.{function}|{series}|")
            ]
            assert sum(buckets) == 2, (function, series, fields)
            assert fields[f"tests.worker.jobs.{function}|{series}_sum"] >= 0


def test_a_worker_without_metrics_counts_nothing(connection):
    queue = Queue("uncounted", connection=connection)
    job = enqueue(queue, jobs.succeed, policy=None)

    run_until_settled([queue], job)

    assert connection.hgetall(metrics_key("uncounted")) == {}


@pytest.mark.parametrize("func", [noop, fail], ids=["success", "failure"])
def test_counting_adds_five_commands_a_job_and_no_round_trip(redis_url, tmp_path, func):
    # Given what a job costs SimpleRetryWorker without metrics, then with them
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off = per_job(SimpleRetryWorker, redis_url, tmp_path / "off", func=func)
    on = per_job(SimpleRetryWorker, redis_url, tmp_path / "on", func=func, job_metrics=JobMetrics())

    # Then the counters ride in the outcome's transaction: same round trips, five more commands
    # (the outcome, a bucket and a sum for the run time, the same for the wait)
    assert on.round_trips == off.round_trips
    assert on.commands == off.commands + 5


def test_a_time_falls_in_the_smallest_bucket_that_holds_it():
    assert bucket_of(0.0) == "0.005"
    assert bucket_of(0.005) == "0.005"
    assert bucket_of(0.0051) == "0.01"
    assert bucket_of(BUCKETS[-1]) == "300.0"
    assert bucket_of(301) == "+Inf"
