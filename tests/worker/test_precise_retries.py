"""Precise retries: due on the Redis clock, promoted once and never early, by any number of workers."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from rq import Queue, RateLimit
from rq.job import Job, JobStatus

from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from tests.worker import jobs
from tests.worker.retry_support import attempts, enqueue, runs, starts, timestamp
from worker import Backoff, keys
from worker.retries.promoter import Promoter
from worker.retries.rq_scheduler import RetryAwareScheduler
from worker.retries.scheduler import pending_retries, promote_due, schedule_retry
from worker.workers import SimpleRetryWorker


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def schedule(queue: Queue, job: Job, delay: float) -> float:
    """Make `job` a retry due in `delay` seconds; its due time (Redis clock)."""
    with queue.connection.pipeline() as pipe:
        schedule_retry(job, queue, delay, pipe)
        pipe.execute()
    return queue.scheduled_job_registry.get_scheduled_time(job).timestamp()


def test_promotion_moves_only_due_retries_and_marks_them_queued_as_rq_does(connection, queue):
    # Given a retry due now and one due in a minute
    due_now = enqueue(queue, jobs.succeed)
    later = enqueue(queue, jobs.succeed)
    queue.empty()
    now_score = schedule(queue, due_now, 0)
    later_score = schedule(queue, later, 60)
    assert due_now.get_status() == JobStatus.SCHEDULED
    # When promotion runs
    promotion = promote_due(connection, [queue])
    # Then only the due one moved, no earlier than its due time, and looks freshly enqueued to rq
    assert promotion.moved == 1
    assert promotion.server_time >= now_score
    assert queue.job_ids == [due_now.id]
    assert due_now.get_status() == JobStatus.QUEUED
    due_now.refresh()
    assert abs(due_now.enqueued_at.replace(tzinfo=timezone.utc).timestamp() - promotion.server_time) < 1e-3
    assert due_now.id not in queue.scheduled_job_registry
    # And the other waits, its due time reported with the Redis clock
    assert later.get_status() == JobStatus.SCHEDULED
    assert pending_retries(connection, "default") == {later.id: pytest.approx(later_score, abs=1e-5)}
    assert promotion.next_due == pytest.approx(later_score, abs=1e-5)


def test_a_retry_someone_else_already_took_is_never_pushed_again(connection, queue):
    # Given a due retry that a user already enqueued by hand (which takes it out of rq's registry)
    job = enqueue(queue, jobs.succeed)
    queue.empty()
    schedule(queue, job, 0)
    queue.scheduled_job_registry.requeue(job)
    # When promotion runs
    promotion = promote_due(connection, [queue])
    # Then the job is in its queue once, and our index forgot it
    assert promotion.moved == 0
    assert queue.job_ids == [job.id]
    assert pending_retries(connection, "default") == {}


def test_a_retry_goes_to_the_front_when_rq_would_put_it_there(connection, queue):
    queue.enqueue(jobs.succeed)
    job = queue.enqueue_at(datetime.now(timezone.utc), jobs.succeed, at_front=True)
    queue.scheduled_job_registry.remove(job)
    schedule(queue, job, 0)
    promote_due(connection, [queue])
    assert queue.job_ids[0] == job.id


def test_the_retry_aware_rq_scheduler_runs_rqs_scheduled_jobs_and_leaves_our_retries_alone(connection, queue):
    # Given, both due, a job scheduled the rq way and one of our retries
    rqs = queue.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=1), jobs.succeed)
    ours = enqueue(queue, jobs.succeed)
    queue.empty()
    schedule(queue, ours, 0)
    # When the scheduler a RetryWorker starts for --with-scheduler runs
    scheduler = RetryAwareScheduler([queue], connection=connection)
    scheduler.acquire_locks()
    try:
        scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.release_locks()
    # Then it enqueued rq's job only; ours is still waiting for a promoter, which pushes it once
    assert queue.job_ids == [rqs.id]
    assert ours.get_status() == JobStatus.SCHEDULED
    assert promote_due(connection, [queue]).moved == 1
    assert queue.job_ids == [rqs.id, ours.id]


def test_a_rate_limited_retry_is_left_to_rqs_scheduler_and_its_rate_limiter(connection, queue):
    # Given a rate-limited job with a policy that has just failed
    job = enqueue(queue, jobs.always_fail, rate_limit=RateLimit("payments", concurrency=1))
    SimpleRetryWorker([queue], connection=connection).work(burst=True)
    # Then it is scheduled where rq shows it, but not ours to promote
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.id in queue.scheduled_job_registry
    assert pending_retries(connection, "default") == {}
    # And once due (rq's whole-second clock), rq's scheduler enqueues it through the rate limiter
    scheduler = RetryAwareScheduler([queue], connection=connection)
    scheduler.acquire_locks()
    try:

        def enqueued() -> bool:
            scheduler.enqueue_scheduled_jobs()
            return job.get_status() == JobStatus.QUEUED

        wait_until(
            enqueued, timeout=5, what="rq's scheduler to enqueue the rate-limited retry", interval=0.05
        )
    finally:
        scheduler.release_locks()
    assert queue.job_ids == [job.id]


def test_an_earlier_retry_wakes_a_promoter_sleeping_until_a_later_one(connection, queue):
    # Given a promoter that never polls on its own, sleeping until a retry due in ten minutes
    far = enqueue(queue, jobs.succeed)
    queue.empty()
    far_score = schedule(queue, far, 600)
    promoter = Promoter(connection, [queue], job_class=Job, name="test-promoter", idle_check=3600, lease=3600)
    promoter.start()
    try:
        wait_until(
            lambda: promoter.last and promoter.last.next_due == pytest.approx(far_score, abs=1e-5),
            timeout=10,
            what="the promoter to plan for the far retry",
        )
        # When a retry due at once is scheduled
        near = enqueue(queue, jobs.succeed)
        queue.empty()
        near_score = schedule(queue, near, 0.01)
        # Then the announcement wakes the promoter, which moves it
        wait_until(lambda: queue.job_ids == [near.id], timeout=10, what="the near retry to be promoted")
        near.refresh()  # enqueued_at: the Redis clock when it was promoted
        assert near.enqueued_at.replace(tzinfo=timezone.utc).timestamp() >= near_score
        assert far.get_status() == JobStatus.SCHEDULED
    finally:
        promoter.stop()


def test_one_promoter_per_queue_does_the_work_and_another_takes_over_when_it_stops(connection, queue):
    # Given two promoters on the same queue
    first = Promoter(connection, [queue], job_class=Job, name="first")
    first.start()
    wait_until(lambda: first.last and first.last.duty == (True,), timeout=10, what="first to hold the lease")
    second = Promoter(connection, [queue], job_class=Job, name="second")
    second.start()
    try:
        # Then only the first promotes (holds the queue's lease); the second stands by
        wait_until(
            lambda: second.last and second.last.duty == (False,), timeout=10, what="second to stand by"
        )
        # When the first stops, it hands over at once: the second promotes a retry it alone can move now
        first.stop()
        job = enqueue(queue, jobs.succeed)
        queue.empty()
        schedule(queue, job, 0.01)
        wait_until(lambda: queue.job_ids == [job.id], timeout=10, what="the second promoter to promote it")
        assert second.last.duty == (True,)
    finally:
        first.stop()
        second.stop()


def test_a_promoter_standing_by_moves_a_retry_the_one_on_duty_left_late_and_takes_over_its_lease(
    connection, queue
):
    # Given a queue whose promoter on duty died holding its lease (0.5s left), and a retry due now
    connection.set(keys.promoter_lease("default"), "dead-worker", px=500)
    job = enqueue(queue, jobs.succeed)
    queue.empty()
    due = schedule(queue, job, 0)
    # When another worker's promoter runs
    promoter = Promoter(connection, [queue], job_class=Job, name="survivor", idle_check=0.1, grace=0.02)
    promoter.start()
    try:
        # Then, standing by, it moves the retry once it is late by the grace, not before
        wait_until(lambda: queue.job_ids == [job.id], timeout=10, what="the survivor to move the late retry")
        job.refresh()
        assert job.enqueued_at.replace(tzinfo=timezone.utc).timestamp() >= due + 0.02
        # And it goes on duty once the dead promoter's lease has expired
        wait_until(
            lambda: connection.get(keys.promoter_lease("default")) == b"survivor",
            timeout=10,
            what="the survivor to take the lease over",
        )
    finally:
        promoter.stop()
    assert connection.get(keys.promoter_lease("default")) is None  # released on stop


def test_rq_worker_cli_runs_retries_on_all_its_queues_beside_rqs_own_scheduler(
    connection, redis_url, tmp_path
):
    # Given jobs failing once on each of three queues, and a job scheduled the rq way
    policy = Backoff(max_retries=2, base=0.05, jitter="none")
    queues = {name: Queue(name, connection=connection) for name in ("high", "default", "low")}
    flaky = [enqueue(q, jobs.fail_times, 1, policy=policy) for q in queues.values()]
    rq_scheduled = queues["low"].enqueue_at(datetime.now(timezone.utc) + timedelta(seconds=1), jobs.succeed)
    # When `rq worker -w worker.RetryWorker --with-scheduler high default low` works them
    worker = start_worker(
        redis_url, ["high", "default", "low"], tmp_path=tmp_path, extra_args=["--with-scheduler"]
    )
    try:
        for job in [*flaky, rq_scheduled]:
            wait_until(
                lambda job=job: job.get_status() == JobStatus.FINISHED,
                timeout=20,
                what=f"job {job.id} to finish; worker log:\n{worker.output()[-2000:]}",
            )
    finally:
        worker.stop()
    # Then each flaky job ran exactly twice, its retry no earlier than due, and rq's own job ran once
    for job in flaky:
        assert runs(connection, job) == 2
        first, second = attempts(job)[:2]
        assert first["outcome"] == "retrying"
        assert timestamp(second["started_at"]) >= timestamp(first["retry_at"])
        assert starts(connection, job)[1] >= timestamp(first["retry_at"])
    assert runs(connection, rq_scheduled) == 1


def test_promoters_racing_in_small_batches_push_each_retry_exactly_once(connection, queue, redis_url):
    # Given 500 retries coming due over a fifth of a second
    rng = random.Random(7)
    with connection.pipeline() as pipe:
        created = queue.enqueue_many([Queue.prepare_data(jobs.succeed) for _ in range(500)], pipeline=pipe)
        pipe.execute()
    queue.empty()
    with connection.pipeline() as pipe:
        for job in created:
            schedule_retry(job, queue, rng.uniform(0, 0.2), pipe)
        pipe.execute()

    # When four promoters, none on duty (no leases), race over them five at a time
    def promote_until_done() -> None:
        own = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 20
        while pending_retries(own, "default") and time.monotonic() < deadline:
            promote_due(own, [queue], batch=5)
        own.close()

    threads = [threading.Thread(target=promote_until_done) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then every retry is on the queue exactly once
    assert pending_retries(connection, "default") == {}
    pushed = queue.job_ids
    assert len(pushed) == 500
    assert set(pushed) == {job.id for job in created}


@pytest.mark.slow
def test_four_workers_never_run_one_retry_twice(connection, redis_url, tmp_path):
    # Given 500 jobs that each fail once, retried within a fifth of a second (jittered)
    policy = Backoff(max_retries=1, base=0.2, jitter="full")
    queue = Queue("default", connection=connection)
    with connection.pipeline() as pipe:
        batch = [
            Queue.prepare_data(jobs.fail_times, args=(1,), meta={"retry_policy": policy.to_dict()})
            for _ in range(500)
        ]
        created = queue.enqueue_many(batch, pipeline=pipe)
        pipe.execute()
    # When four workers, one forking and three simple, work the queue together
    workers = [
        start_worker(
            redis_url,
            ["default"],
            tmp_path=tmp_path,
            name=f"w{i}",
            worker_class="worker.RetryWorker" if i == 0 else "worker.SimpleRetryWorker",
        )
        for i in range(4)
    ]
    try:
        finished = queue.finished_job_registry
        wait_until(
            lambda: finished.get_job_count(cleanup=False) == 500,
            timeout=90,
            what="500 jobs to finish",
            interval=0.1,
        )
    finally:
        for worker in workers:
            worker.stop()
    # Then every job ran exactly twice: no retry was ever pushed twice
    with connection.pipeline() as pipe:
        for job in created:
            pipe.get(jobs.runs_key(job.id))
        counts = [int(value) for value in pipe.execute()]
    assert counts == [2] * 500
    assert len(queue) == 0
    assert queue.scheduled_job_registry.get_job_count(cleanup=False) == 0
    assert connection.zcard(keys.retries("default")) == 0


def test_the_promoter_survives_a_redis_restart_and_still_hears_announcements(connection, queue, redis_server):
    # Given a promoter that never polls on its own, listening for announcements
    promoter = Promoter(connection, [queue], job_class=Job, name="test-promoter", idle_check=3600, lease=3600)
    promoter.start()
    try:
        wait_until(lambda: promoter.last is not None, timeout=10, what="the promoter's first promotion")
        # When Redis restarts under it (an empty server: this one does not persist)
        redis_server.restart()
        restarted_at = server_now(connection)
        wait_until(
            lambda: promoter.last.server_time > restarted_at, timeout=20, what="the promoter to reconnect"
        )
        # Then a retry announced afterwards is still promoted
        job = enqueue(queue, jobs.succeed)
        queue.empty()
        schedule(queue, job, 0.01)
        wait_until(lambda: queue.job_ids == [job.id], timeout=10, what="the retry to be promoted")
    finally:
        promoter.stop()


def server_now(connection) -> float:
    seconds, micros = connection.time()
    return seconds + micros / 1_000_000
