"""A job whose data is a zlib bomb fails at once, naming the limit, and never costs a worker its memory.

rq decompresses a job's data without a bound: 300 KB written to Redis became ~300 MB in the worker
(and more in whatever decoded it next), at dequeue and again in the registry cleanup at start.
"""

from __future__ import annotations

import zlib

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.memory import PeakRss, zlib_bomb
from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs, jobs, prefork_jobs
from tests.worker.retry_support import enqueue
from worker.gate.decompress import decompress_bounded
from worker.gate.limits import JobLimits, bounded_job_class, oversize
from worker.serializers import JSONSerializer
from worker.shortcuts.dequeue import uses_rq_dequeue
from worker.workers import SimpleRetryWorker

WORKER_CLASSES = ["worker.RetryWorker", "worker.SimpleRetryWorker", "worker.PreforkRetryWorker"]
BOMB_DECOMPRESSED_BYTES = 300 * 1024 * 1024
RSS_LIMIT_BYTES = 200 * 1024 * 1024
JSON_ARGS = ["--serializer", "worker.serializers.JSONSerializer"]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zlib_bomb(BOMB_DECOMPRESSED_BYTES)


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


def plant_bomb(connection, queue: Queue, bomb: bytes) -> Job:
    job = enqueue(queue, jobs.succeed)
    connection.hset(job.key, "data", bomb)
    return job


def failure_text(connection, job: Job) -> str:
    return zlib.decompress(connection.hget(job.key, "exc_info")).decode()


def test_bounded_decompression_stops_at_the_limit(bomb):
    assert decompress_bounded(bomb, 1024) is None
    assert decompress_bounded(zlib.compress(b"x" * 1024), 1024) == b"x" * 1024
    assert decompress_bounded(b"not zlib", 1024) == b"not zlib"  # as rq: stored uncompressed
    assert decompress_bounded(bomb[:1000], 1024) is None  # truncated, yet more than the limit


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_zlib_bomb_fails_at_once_and_the_worker_stays_small_and_goes_on(
    connection, redis_url, queue, bomb, tmp_path, worker_class
):
    # Given a job whose data is 300 KB that decompresses to 300 MiB, then a good job
    broken = plant_bomb(connection, queue, bomb)
    good = enqueue(queue, jobs.succeed)
    # When a real worker of each class works the queue, its memory watched while it does
    proc = start_worker(redis_url, ["default"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        with PeakRss(proc.pid) as rss:
            wait_until(
                lambda: good.get_status() == JobStatus.FINISHED, timeout=30, what="the good job to finish"
            )
    finally:
        proc.stop()
    print(f"{worker_class}: peak RSS {rss.peak / 2**20:.0f} MiB")
    # Then the worker never held the bomb, the bomb failed at once naming the field and the limit
    assert rss.peak < RSS_LIMIT_BYTES, f"peak RSS {rss.peak / 2**20:.0f} MiB"
    assert broken.id in queue.failed_job_registry
    text = failure_text(connection, broken)
    assert f"JobTooLarge: Job {broken.id}: cannot load its data: it decompresses past 2097152 bytes" in text
    assert connection.hget(broken.key, "data") == bomb  # kept as stored, for whoever looks into it
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert broken.id not in queue.get_job_ids()


def test_a_bomb_left_in_the_started_registry_does_not_kill_the_worker_at_start(
    connection, redis_url, queue, bomb, tmp_path
):
    # Given a bomb job a dead worker left STARTED, long expired in the started registry
    broken = plant_bomb(connection, queue, bomb)
    connection.hset(broken.key, "status", JobStatus.STARTED.value)
    queue.remove(broken.id)
    connection.zadd(queue.started_job_registry.key, {f"{broken.id}:dead-execution": 1})
    good = enqueue(queue, jobs.succeed)
    # When a worker starts, cleaning registries first
    proc = start_worker(redis_url, ["default"], tmp_path=tmp_path, worker_class="worker.SimpleRetryWorker")
    try:
        with PeakRss(proc.pid) as rss:
            wait_until(lambda: good.get_status() == JobStatus.FINISHED, timeout=30, what="the good job")
        assert proc.alive(), proc.output()[-3000:]
    finally:
        proc.stop()
    print(f"start-up cleanup: peak RSS {rss.peak / 2**20:.0f} MiB")
    # Then it survived the cleanup, stayed small, and the abandoned bomb is failed, data as stored
    assert rss.peak < RSS_LIMIT_BYTES, f"peak RSS {rss.peak / 2**20:.0f} MiB"
    assert broken.get_status() == JobStatus.FAILED
    assert connection.hget(broken.key, "data") == bomb


def test_meta_over_its_limit_fails_the_job_naming_meta(connection, queue):
    broken = enqueue(queue, jobs.succeed)
    connection.hset(broken.key, "meta", b"[" + b"0," * 1000 + b"0]")
    good = enqueue(queue, jobs.succeed)
    SimpleRetryWorker([queue], connection=connection, job_limits=JobLimits(max_meta_bytes=1000)).work(
        burst=True
    )
    assert broken.id in queue.failed_job_registry
    assert f"Job {broken.id}: cannot load its meta: it is larger than 1000 bytes" in failure_text(
        connection, broken
    )
    assert good.get_status() == JobStatus.FINISHED


def test_a_worker_class_attribute_sets_the_limits(connection, queue):
    class SmallJobsWorker(SimpleRetryWorker):
        job_limits = JobLimits(max_data_bytes=64)

    broken = enqueue(queue, jobs.fail_times, "x" * 100)
    SmallJobsWorker([queue], connection=connection).work(burst=True)
    assert "decompresses past 64 bytes" in failure_text(connection, broken)
    job = SmallJobsWorker([queue], connection=connection).job_class.fetch(broken.id, connection=connection)
    assert oversize(job) is not None and oversize(job).field_name == "data"


def test_a_bounded_job_class_still_dequeues_in_one_round_trip():
    assert uses_rq_dequeue(Queue, bounded_job_class(Job, JobLimits()))


def test_failure_text_past_its_limit_is_shown_as_a_note_not_decompressed(connection, queue, bomb):
    job = enqueue(queue, jobs.succeed)
    connection.hset(job.key, "exc_info", bomb)
    loaded = bounded_job_class(Job, JobLimits()).fetch(job.id, connection=connection)
    assert loaded.exc_info == "(failure text over 1048576 bytes; not loaded)"
    assert oversize(loaded) is None  # the job itself still loads and runs


NOT_OBJECT_METAS = [b"[1,2,3]", b'"hello"', b"null"]


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_meta_that_is_not_a_json_object_fails_the_job_at_once_and_the_worker_goes_on(
    connection, redis_url, tmp_path, worker_class
):
    # Given jobs whose meta someone with write access to Redis set to a list, a string and null
    # (rq's JSON serializer, as rq_signals queues write), then a good job
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    broken = []
    for meta in NOT_OBJECT_METAS:
        job = enqueue(queue, jobs.succeed)
        connection.hset(job.key, "meta", meta)
        broken.append(job)
    good = enqueue(queue, jobs.succeed)
    # When a real worker of each class works the queue
    proc = start_worker(
        redis_url, ["default"], tmp_path=tmp_path, worker_class=worker_class, extra_args=JSON_ARGS
    )
    try:
        wait_until(lambda: good.get_status() == JobStatus.FINISHED, timeout=30, what="the good job to finish")
        # Then it is the same worker still serving: none of them killed it ...
        assert proc.alive(), proc.output()[-3000:]
    finally:
        proc.stop()
    # ... each failed at once, naming the job and what its meta is, never run nor retried
    for job, meta in zip(broken, NOT_OBJECT_METAS, strict=True):
        assert job.id in queue.failed_job_registry, proc.output()[-3000:]
        text = failure_text(connection, job)
        assert f"MetaNotAnObject: Job {job.id}: cannot load its meta: it is not a JSON object" in text
        assert connection.get(jobs.runs_key(job.id)) is None
        assert connection.hget(job.key, "meta") == meta  # kept as stored, for whoever looks into it
    assert "found an unhandled exception" not in proc.output()


def test_a_started_job_whose_meta_is_a_list_is_failed_by_recovery_not_retried_forever(
    connection, redis_url, tmp_path
):
    # Given a job with list meta whose worker died mid-job: STARTED, its lease run out
    queue = Queue("crash", connection=connection, serializer=JSONSerializer)
    broken = enqueue(queue, jobs.succeed)
    queue.remove(broken.id)
    connection.hset(broken.key, mapping={"meta": b"[1,2,3]", "status": JobStatus.STARTED.value})
    crash_jobs.expired_lease(connection, queue, member=f"{broken.id}:execution-1")
    # When a worker recovers it
    proc = start_worker(
        redis_url,
        ["crash"],
        tmp_path=tmp_path,
        worker_class="tests.worker.crash_jobs.FastSimpleRetryWorker",
        extra_args=JSON_ARGS,
    )
    try:
        wait_until(
            lambda: broken.get_status() == JobStatus.FAILED,
            timeout=30,
            what="recovery to fail the list-meta job",
        )
        assert proc.alive(), proc.output()[-3000:]
    finally:
        proc.stop()
    # Then it failed once, saying why, and recovery never looped on it
    assert broken.id in queue.failed_job_registry
    assert "it is not a JSON object but a list ([1, 2, 3])" in broken.latest_result().exc_string
    assert "AttributeError" not in proc.output()


def test_a_job_hash_without_a_timeout_runs_under_rqs_default_and_the_fork_worker_survives(
    connection, redis_url, tmp_path
):
    # Given a job hash someone wrote without a timeout (rq's queues always write one), running longer
    # than the worker's monitoring interval, then a good job
    queue = Queue("default", connection=connection)
    slow = queue.enqueue(prefork_jobs.sleep_for, 2.5)
    connection.hdel(slow.key, "timeout")
    good = enqueue(queue, jobs.succeed)
    # When a fork-per-job worker that checks on its horse every second works the queue
    proc = start_worker(
        redis_url, ["default"], tmp_path=tmp_path, extra_args=["--job-monitoring-interval", "1"]
    )
    try:
        wait_until(lambda: good.get_status() == JobStatus.FINISHED, timeout=30, what="the good job to finish")
        # Then the worker survived the monitor's `timeout + 60`, and the slow job ran to its end
        assert proc.alive(), proc.output()[-3000:]
    finally:
        proc.stop()
    assert slow.get_status() == JobStatus.FINISHED, proc.output()[-3000:]
    assert "TypeError" not in proc.output()
    assert (
        bounded_job_class(Job, JobLimits()).fetch(slow.id, connection=connection).timeout
        == Queue.DEFAULT_TIMEOUT
    )
