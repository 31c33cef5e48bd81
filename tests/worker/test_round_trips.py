"""Our workers run a job in far fewer Redis round trips than rq's, and leave Redis as rq's leave it.

Counts, not timings: every round trip of the worker's main thread and of its horses is recorded
(`tests.support.round_trips`), for burst runs over 5 and over 25 no-op jobs, and the difference is
divided by 20, so start-up and shut-down cancel out. rq's own class is measured in the same test.
"""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.suspension import resume, suspend

from tests.support.round_trips import noop, per_job
from tests.support.upstream import RqSimpleWorker as SimpleWorker
from tests.support.upstream import RqWorker as Worker
from worker import PreforkRetryWorker, RetryWorker, SimpleRetryWorker

#: Round trips per no-op job (rq 3.0: SimpleWorker 20, Worker 24 of which 4 open the horse's connection).
SIMPLE_MOST = 5
FORKING_MOST = 9
PREFORK_MOST = 5


def test_simple_retry_worker_runs_a_job_in_at_most_5_round_trips_where_rq_needs_20(redis_url, tmp_path):
    # Given rq's SimpleWorker and ours, each over the same burst of no-op jobs
    theirs = per_job(SimpleWorker, redis_url, tmp_path)
    ours = per_job(SimpleRetryWorker, redis_url, tmp_path)

    # Then ours needs a quarter of rq's round trips per job, and fewer commands too
    assert ours.round_trips <= SIMPLE_MOST, ours.trace
    assert ours.round_trips * 4 <= theirs.round_trips, (ours, theirs)
    assert ours.commands < theirs.commands, (ours, theirs)


def test_retry_worker_runs_a_job_in_at_most_9_round_trips_where_rq_needs_24(redis_url, tmp_path):
    # Given rq's forking Worker and ours (each job in a fresh horse, with its own connection)
    theirs = per_job(Worker, redis_url, tmp_path)
    ours = per_job(RetryWorker, redis_url, tmp_path)

    # Then ours needs less than half of rq's round trips per job
    assert ours.round_trips <= FORKING_MOST, ours.trace
    assert ours.round_trips * 2 < theirs.round_trips, (ours, theirs)
    assert ours.commands < theirs.commands, (ours, theirs)


def test_prefork_retry_worker_runs_a_job_in_at_most_5_round_trips_where_rq_needs_24(redis_url, tmp_path):
    # Given rq's forking Worker and our prefork one (one long-lived horse, its connection opened once)
    theirs = per_job(Worker, redis_url, tmp_path)
    ours = per_job(PreforkRetryWorker, redis_url, tmp_path)

    # Then ours needs no more than SimpleRetryWorker: a dequeue script, a start transaction sent by
    # the worker for the horse, and rq's outcome (WATCH, SMEMBERS of dependents, the transaction)
    assert ours.round_trips <= PREFORK_MOST, ours.trace
    assert ours.round_trips * 4 <= theirs.round_trips, (ours, theirs)
    assert ours.commands < theirs.commands, (ours, theirs)


def run_three(worker_class, connection, queue_name: str, **enqueue) -> tuple[list[Job], dict]:
    queue = Queue(queue_name, connection=connection)
    jobs = [queue.enqueue(noop, **enqueue) for _ in range(3)]
    worker = worker_class([queue], connection=connection)
    worker.work(burst=True, logging_level="WARNING")
    for job in jobs:
        job.refresh()
    return jobs, {key.decode(): value for key, value in connection.hgetall(worker.key).items()}


def test_redis_holds_what_rq_leaves_after_the_same_jobs(redis_url):
    # Given the same three jobs run by rq's SimpleWorker and by ours, on two queues
    connection = redis.Redis.from_url(redis_url)
    theirs, their_worker = run_three(SimpleWorker, connection, "theirs")
    ours, our_worker = run_three(SimpleRetryWorker, connection, "ours")

    # Then each job hash has the same fields, status and timestamps, in the same registries
    for rq_job, job in zip(theirs, ours, strict=True):
        assert set(connection.hkeys(job.key)) == set(connection.hkeys(rq_job.key))
        assert job.get_status() == rq_job.get_status() == JobStatus.FINISHED
        assert job.started_at <= job.ended_at <= job.last_heartbeat
        assert job.latest_result().type == rq_job.latest_result().type
    queue = Queue("ours", connection=connection)
    assert sorted(queue.finished_job_registry.get_job_ids()) == sorted(job.id for job in ours)
    assert queue.started_job_registry.count == 0
    assert connection.llen(queue.intermediate_queue_key) == 0
    # And the worker hash says what rq's says: idle, three successes, alive until it stopped
    assert set(our_worker) == set(their_worker)
    assert our_worker["state"] == their_worker["state"] == b"idle"
    assert our_worker["successful_job_count"] == their_worker["successful_job_count"] == b"3"
    connection.close()


def test_the_last_heartbeat_of_a_failed_job_is_saved_with_its_failure(redis_url):
    # Given a job that fails, run by our worker (its ending heartbeat rides in the failure's pipeline)
    connection = redis.Redis.from_url(redis_url)
    queue = Queue("fails", connection=connection)
    job = queue.enqueue("tests.worker.jobs.always_fail")
    SimpleRetryWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")

    # Then the failed job's last heartbeat is when it ended, as rq's separate write leaves it
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert job.last_heartbeat >= job.ended_at >= job.started_at
    connection.close()


def test_a_suspended_burst_worker_takes_no_job_and_a_resumed_one_does(redis_url):
    # Given workers suspended with `rq suspend` (the check rides in our dequeue script)
    connection = redis.Redis.from_url(redis_url)
    queue = Queue("suspended", connection=connection)
    job = queue.enqueue(noop)
    suspend(connection)

    # When a burst worker runs, it takes no job, as rq's
    worker = SimpleRetryWorker([queue], connection=connection)
    assert worker.work(burst=True, logging_level="WARNING") is False
    assert queue.get_job_ids() == [job.id]
    assert job.get_status() == JobStatus.QUEUED

    # And once resumed, the next one runs it
    resume(connection)
    assert worker.work(burst=True, logging_level="WARNING") is True
    assert job.get_status() == JobStatus.FINISHED
    connection.close()


@pytest.mark.parametrize(
    "ours, theirs",
    [(SimpleRetryWorker, SimpleWorker), (RetryWorker, Worker), (PreforkRetryWorker, Worker)],
    ids=["SimpleRetryWorker", "RetryWorker", "PreforkRetryWorker"],
)
@pytest.mark.parametrize("burst", [False, True], ids=["loop", "burst"])
def test_a_worker_stopping_after_max_jobs_leaves_its_hash_as_rq_does(redis_url, ours, theirs, burst):
    # Given rq's class and ours, each told to stop after one job while another waits
    connection = redis.Redis.from_url(redis_url)
    hashes = []
    for worker_class in (theirs, ours):
        queue = Queue(worker_class.__name__, connection=connection)
        job = queue.enqueue(noop)
        queue.enqueue(noop)
        worker = worker_class([queue], connection=connection)
        worker.work(burst=burst, max_jobs=1, logging_level="WARNING")
        assert job.get_status() == JobStatus.FINISHED
        hashes.append({key.decode(): value for key, value in connection.hgetall(worker.key).items()})

    # Then ours says idle (not busy), with a heartbeat after its job, as rq's does
    rqs, ours_hash = hashes
    assert set(ours_hash) == set(rqs)
    assert ours_hash["state"] == rqs["state"] == b"idle"
    assert ours_hash["successful_job_count"] == rqs["successful_job_count"] == b"1"
    assert ours_hash["last_heartbeat"] >= connection.hget(job.key, "ended_at")
    connection.close()
