"""A retry policy in a job's meta is data anyone who can write to Redis controls: it runs nothing.

Real `rq worker` subprocesses of each class. A policy naming modules (`this`, which prints the Zen
of Python when imported, and `venv.__main__`, which exits the process) imports neither; a policy
with a delay no datetime can hold fails its job with an error naming the field; either way the
worker stays up and takes the next job, and a recovery thread that meets such a policy goes on
recovering crashed jobs.
"""

from __future__ import annotations

from typing import Any

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.processes import Proc, start_worker
from tests.support.waiting import wait_until
from tests.worker import crash_jobs, jobs
from tests.worker.crash_jobs import expired_lease, key
from tests.worker.retry_support import attempts
from worker.retries.backoff import POLICY_META_KEY

CLASSES = ["worker.RetryWorker", "worker.SimpleRetryWorker", "worker.PreforkRetryWorker"]
ZEN = "Beautiful is better than ugly"
#: Names that run code when imported: `this` prints, `venv.__main__` calls sys.exit(2).
IMPORTING_NAMES = ["this.x", "venv.__main__.x"]

POLICIES: dict[str, dict[str, Any]] = {
    "give_up_on names modules": {
        "max_retries": 1,
        "base": 0.05,
        "jitter": "none",
        "give_up_on": IMPORTING_NAMES,
    },
    "retry_on names modules": {
        "max_retries": 1,
        "base": 0.05,
        "jitter": "none",
        "retry_on": IMPORTING_NAMES,
    },
    "huge delay": {"max_retries": 3, "base": 1e12, "max_delay": 1e12},
}


def enqueue(queue: Queue, func: Any, policy: dict[str, Any]) -> Job:
    return queue.enqueue(func, meta={POLICY_META_KEY: policy})


def failure_text(job: Job) -> str:
    result = job.latest_result()
    assert result is not None, f"job {job.id} has no result"
    return str(result.exc_string)


def settled(job: Job, worker: Proc, status: JobStatus, what: str) -> None:
    def reached() -> bool:
        assert worker.alive(), worker.output()[-3000:]
        return job.get_status() == status

    wait_until(reached, timeout=30, what=what)


@pytest.mark.parametrize("kind", sorted(POLICIES))
@pytest.mark.parametrize("worker_class", CLASSES)
def test_a_hostile_policy_runs_nothing_and_the_worker_takes_the_next_job(
    connection, redis_url, tmp_path, worker_class, kind
):
    # Given a failing job whose policy was written into Redis by someone else, then a proper job
    queue = Queue("hostile", connection=connection)
    hostile = enqueue(queue, jobs.always_fail, POLICIES[kind])
    after = queue.enqueue(crash_jobs.quick)

    # When a worker of each class serves the queue
    worker = start_worker(redis_url, ["hostile"], tmp_path=tmp_path, worker_class=worker_class)
    try:
        settled(hostile, worker, JobStatus.FAILED, f"the job with a policy whose {kind} to fail")
        settled(after, worker, JobStatus.FINISHED, "the next job to run")

        # Then nothing named in the policy was imported, and the same worker is still serving
        assert worker.alive()
        assert ZEN not in worker.output()
        assert "usage: venv" not in worker.output()
        assert connection.get(key(after.id, "runs")) == b"1"
        if kind == "huge delay":
            # ... the job failed at once, saying which field of which job was wrong
            text = failure_text(hostile)
            assert f"Job {hostile.id}: invalid retry_policy" in text
            assert "base must be a finite number of seconds between 0 and 31536000" in text
            assert [record["outcome"] for record in attempts(hostile)] == ["failed"]
        elif kind == "retry_on names modules":
            # ... and the filters matched by name: no class of that name, so no retry
            assert [record["outcome"] for record in attempts(hostile)] == ["failed"]
        else:
            # ... and the filters matched by name: no class of that name to give up on, so one retry
            assert [record["outcome"] for record in attempts(hostile)] == ["retrying", "failed"]
    finally:
        worker.stop()


def crashed_job(connection, queue: Queue, policy: dict[str, Any], number: int) -> Job:
    """A started job whose worker died: its lease has just run out."""
    job = Job.create(
        crash_jobs.quick, connection=connection, origin=queue.name, meta={POLICY_META_KEY: policy}
    )
    job.set_status(JobStatus.STARTED)
    job.save()
    expired_lease(connection, queue, f"{job.id}:execution-{number}")
    return job


def test_a_recovery_thread_that_meets_hostile_policies_keeps_recovering(connection, redis_url, tmp_path):
    # Given a worker whose recovery thread scans every half second
    queue = Queue("crash", connection=connection)
    worker = start_worker(
        redis_url, ["crash"], tmp_path=tmp_path, worker_class="tests.worker.crash_jobs.FastSimpleRetryWorker"
    )
    try:
        wait_until(lambda: "Listening on" in worker.output(), timeout=30, what="the worker to start")
        # When it recovers a crashed job whose policy names a module that exits the process
        exits = crashed_job(connection, queue, {"max_retries": 0, "give_up_on": ["venv.__main__.x"]}, 1)
        settled(exits, worker, JobStatus.FAILED, "the job naming venv.__main__ to be recovered")
        # ... then one whose delay overflows a datetime, then an ordinary one
        huge = crashed_job(connection, queue, {"max_delay": 1e12}, 2)
        settled(huge, worker, JobStatus.FAILED, "the job with a huge delay to be recovered")
        plain = crashed_job(connection, queue, {"max_retries": 0}, 3)

        # Then the same recovery thread recovers each one, and the worker is still up
        settled(plain, worker, JobStatus.FAILED, "the ordinary crashed job to be recovered")
        assert "WorkerCrashed" in failure_text(exits)
        assert f"Job {huge.id}: invalid retry_policy" in failure_text(huge)
        assert "max_delay must be a finite number" in failure_text(huge)
        assert worker.alive()
        assert "usage: venv" not in worker.output()
    finally:
        worker.stop()
