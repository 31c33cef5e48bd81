"""PreforkRetryWorker as an operator sees it: one long-lived work horse, and a crash costs one job only.

Real redis-server, real `rq worker -w ...` subprocesses stopped by their pid. Jobs report the pid
of the process that ran them, which tells which horse ran what; a test that kills a horse kills
the pid its job reported, a descendant of the worker the test started.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from rq import Queue
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus
from rq.results import Result
from rq.worker import Worker

from tests.support.processes import Proc, start_worker
from tests.support.waiting import wait_until
from tests.worker import prefork_jobs
from worker import Backoff, PreforkRetryWorker
from worker.retries.attempts import ATTEMPTS_META_KEY
from worker.retries.backoff import POLICY_META_KEY
from worker.retries.scheduler import promote_due

PREFORK = "worker.PreforkRetryWorker"
QUICK = "tests.worker.prefork_jobs.QuickPreforkWorker"


@pytest.fixture
def queue(connection) -> Queue:
    return Queue("prefork", connection=connection)


def burst(redis_url: str, tmp_path, worker_class: str = PREFORK) -> Proc:
    """Run a burst worker on the queue until it has emptied it; it must exit cleanly."""
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=worker_class, burst=True)
    assert proc.wait(timeout=30) == 0, proc.log_path.read_text()[-3000:]
    return proc


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def job_pid(connection, job: Job, proc: Proc) -> int:
    """Wait until a `wait_for_release` job has started; the pid of the horse running it."""

    def started():
        assert proc.alive(), proc.output()[-3000:]
        return connection.get(prefork_jobs.pid_key(job.id))

    return int(wait_until(started, timeout=15, what=f"job {job.id} to start"))


def shutdown_requested(connection) -> None:
    """Wait until the (one) worker has taken a warm shutdown request mid-job."""
    wait_until(
        lambda: any(worker.shutdown_requested_date for worker in Worker.all(connection=connection)),
        timeout=10,
        what="the worker to take the shutdown request",
    )


def status_becomes(job: Job, status: JobStatus, timeout: float = 15) -> None:
    wait_until(lambda: job.get_status() == status, timeout=timeout, what=f"job {job.id} to be {status}")


def test_cli_worker_runs_jobs_in_one_reused_horse_and_stores_results_as_rq_does(redis_url, queue, tmp_path):
    # Given four jobs that return the pid of the process running them
    jobs = [queue.enqueue(prefork_jobs.horse_pid) for _ in range(4)]

    # When `rq worker -w worker.PreforkRetryWorker --burst` runs them
    proc = burst(redis_url, tmp_path)

    # Then all finished, in one horse that is not the worker itself ...
    assert [job.get_status() for job in jobs] == [JobStatus.FINISHED] * 4
    [horse] = {job.return_value() for job in jobs}
    assert horse != proc.pid
    # ... with rq's own results and registries
    for job in jobs:
        result = job.latest_result()
        assert result is not None
        assert result.type == Result.Type.SUCCESSFUL
        assert result.return_value == horse
    assert sorted(queue.finished_job_registry.get_job_ids()) == sorted(job.id for job in jobs)
    assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    assert queue.failed_job_registry.count == 0


@pytest.mark.parametrize(
    ("crash", "says"),
    [(prefork_jobs.exit_hard, "waitpid returned 256"), (prefork_jobs.segfault, "(signal 11)")],
    ids=["os._exit", "segfault"],
)
def test_a_job_that_kills_its_horse_fails_alone_and_the_next_runs_in_a_fresh_horse(
    redis_url, queue, tmp_path, crash, says
):
    # Given a job that ends its process, between jobs that report their process
    before = queue.enqueue(prefork_jobs.horse_pid)
    crasher = queue.enqueue(crash)
    after = [queue.enqueue(prefork_jobs.horse_pid) for _ in range(2)]

    # When one worker runs them all
    burst(redis_url, tmp_path)

    # Then only the crashing job failed, saying how its horse died ...
    assert crasher.get_status() == JobStatus.FAILED
    assert queue.failed_job_registry.get_job_ids() == [crasher.id]
    result = crasher.latest_result()
    assert result is not None
    assert "Work-horse terminated unexpectedly" in result.exc_string
    assert says in result.exc_string
    # ... and the jobs after it ran in one fresh horse
    assert [job.get_status() for job in [before, *after]] == [JobStatus.FINISHED] * 3
    assert after[0].return_value() == after[1].return_value() != before.return_value()


def test_a_crashed_job_is_retried_under_its_policy(redis_url, connection, queue, tmp_path):
    # Given a job with a retry policy that kills its horse on its first run only
    policy = Backoff(max_retries=2, base=0.05, jitter="none")
    job = queue.enqueue(prefork_jobs.exit_on_first_run, meta={POLICY_META_KEY: policy.to_dict()})

    # When a worker runs it, the crash is recorded and a retry scheduled ...
    burst(redis_url, tmp_path)
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    [attempt] = job.meta[ATTEMPTS_META_KEY]
    assert attempt["exc_type"] == "worker.exceptions.WorkerCrashed"
    assert attempt["outcome"] == "retrying"

    # ... and once the retry is due, the next run succeeds in a fresh horse
    wait_until(lambda: promote_due(connection, [queue]).moved, timeout=5, what="the retry to be due")
    burst(redis_url, tmp_path)
    assert job.get_status() == JobStatus.FINISHED
    assert isinstance(job.return_value(), int)


def test_a_sigkilled_horse_fails_its_job_only_and_the_worker_goes_on(redis_url, connection, queue, tmp_path):
    # Given a worker whose horse is running a job that waits
    held = queue.enqueue(prefork_jobs.wait_for_release)
    after = queue.enqueue(prefork_jobs.horse_pid)
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        horse = job_pid(connection, held, proc)
        assert horse != proc.pid

        # When that horse is killed outright (as the OOM killer would)
        os.kill(horse, signal.SIGKILL)

        # Then its job fails, the worker lives on and runs the next job in a fresh horse
        status_becomes(held, JobStatus.FAILED)
        status_becomes(after, JobStatus.FINISHED)
        assert proc.alive()
        assert after.return_value() not in (horse, proc.pid)
        assert "(signal 9)" in held.latest_result().exc_string
    finally:
        proc.stop()


def test_a_horse_killed_between_jobs_is_replaced_and_no_job_fails(redis_url, connection, queue, tmp_path):
    # Given a worker whose horse has run a job and waits for the next
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        first = queue.enqueue(prefork_jobs.horse_pid)
        status_becomes(first, JobStatus.FINISHED)
        horse = first.return_value()

        # When that idle horse is killed (as the OOM killer might)
        os.kill(horse, signal.SIGKILL)
        wait_until(lambda: not is_running(horse), timeout=10, what=f"horse {horse} to die")

        # Then the next job runs in a fresh horse and nothing failed
        second = queue.enqueue(prefork_jobs.horse_pid)
        status_becomes(second, JobStatus.FINISHED)
        assert second.return_value() not in (horse, proc.pid)
        assert queue.failed_job_registry.count == 0
    finally:
        proc.stop()


def test_a_horse_is_replaced_after_max_jobs_per_horse(redis_url, queue, tmp_path):
    # Given a worker whose horses run 3 jobs each, and 7 jobs
    jobs = [queue.enqueue(prefork_jobs.horse_pid) for _ in range(7)]

    burst(redis_url, tmp_path, worker_class=QUICK)

    # Then three horses ran them, in turn
    pids = [job.return_value() for job in jobs]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    assert pids[6] != pids[0]


def test_a_horse_over_its_memory_limit_is_replaced_after_its_job(redis_url, queue, tmp_path):
    # Given a worker that replaces horses above 150 MB, and a job that leaks 200 MB
    first = queue.enqueue(prefork_jobs.horse_pid)
    leak = queue.enqueue(prefork_jobs.leak_megabytes, 200)
    after = queue.enqueue(prefork_jobs.horse_pid)

    burst(redis_url, tmp_path, worker_class="tests.worker.prefork_jobs.LowMemoryPreforkWorker")

    # Then the leaking job succeeded in the first horse, and the next job ran in a fresh one
    assert [job.get_status() for job in (first, leak, after)] == [JobStatus.FINISHED] * 3
    assert first.return_value() == leak.return_value() != after.return_value()


def test_a_job_past_its_timeout_is_stopped_and_the_next_job_runs(redis_url, queue, tmp_path):
    # Given a job that blocks rq's alarm (SIGALRM) and returns, one that sleeps past its 1 s timeout,
    # one that sleeps past it with the alarm blocked, and quick jobs between
    blocker = queue.enqueue(prefork_jobs.block_alarm)
    sleeper = queue.enqueue(prefork_jobs.sleep_for, 60, job_timeout=1)
    middle = queue.enqueue(prefork_jobs.horse_pid)
    stubborn = queue.enqueue(prefork_jobs.hang_ignoring_alarm, 60, job_timeout=1)
    last = queue.enqueue(prefork_jobs.horse_pid)

    # When a worker with 1 s of grace after a timeout runs them
    burst(redis_url, tmp_path, worker_class=QUICK)

    # Then rq's death penalty stopped the sleeper, in the horse that ran the blocker (whose blocked
    # alarm did not outlive it) and went on with the next job ...
    assert sleeper.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in sleeper.latest_result().exc_string
    assert middle.get_status() == JobStatus.FINISHED
    assert blocker.return_value() == middle.return_value()
    # ... and the worker killed the horse that blocked the alarm; the last job ran in a fresh horse
    assert stubborn.get_status() == JobStatus.FAILED
    assert "(signal 9)" in stubborn.latest_result().exc_string
    assert last.get_status() == JobStatus.FINISHED
    assert last.return_value() != middle.return_value()


def test_warm_shutdown_finishes_the_current_job_and_stops_the_horse(redis_url, connection, queue, tmp_path):
    # Given a worker running a job that waits, and a job queued behind it
    held = queue.enqueue(prefork_jobs.wait_for_release)
    queued = queue.enqueue(prefork_jobs.horse_pid)
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        horse = job_pid(connection, held, proc)

        # When it is asked to stop (SIGTERM), then the job is released
        proc.signal(signal.SIGTERM)
        shutdown_requested(connection)
        connection.set(prefork_jobs.release_key(held.id), 1)

        # Then the current job finishes, the worker exits cleanly, the queued job waits for the next
        assert proc.wait(timeout=15) == 0, proc.log_path.read_text()[-3000:]
        assert held.get_status() == JobStatus.FINISHED
        assert queued.get_status() == JobStatus.QUEUED
        wait_until(lambda: not is_running(horse), timeout=10, what=f"horse {horse} to exit")
    finally:
        proc.kill()


def test_stop_job_command_stops_only_that_job(redis_url, connection, queue, tmp_path):
    held = queue.enqueue(prefork_jobs.wait_for_release)
    after = queue.enqueue(prefork_jobs.horse_pid)
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        horse = job_pid(connection, held, proc)

        send_stop_job_command(connection, held.id)

        status_becomes(held, JobStatus.STOPPED)
        status_becomes(after, JobStatus.FINISHED)
        assert after.return_value() != horse
        assert proc.alive()
    finally:
        proc.stop()


def test_cold_shutdown_kills_the_horse_and_puts_its_job_back(redis_url, connection, queue, tmp_path):
    held = queue.enqueue(prefork_jobs.wait_for_release)
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        horse = job_pid(connection, held, proc)

        proc.signal(signal.SIGTERM)
        shutdown_requested(connection)
        time.sleep(1.2)  # rq ignores a second signal within a second of the first
        proc.signal(signal.SIGTERM)

        proc.wait(timeout=15)
        wait_until(lambda: not is_running(horse), timeout=10, what=f"horse {horse} to die")
        assert held.get_status() == JobStatus.QUEUED
        assert queue.get_job_ids() == [held.id]
    finally:
        proc.kill()


def test_the_horse_dies_with_its_worker(redis_url, connection, queue, tmp_path):
    held = queue.enqueue(prefork_jobs.wait_for_release)
    proc = start_worker(redis_url, ["prefork"], tmp_path=tmp_path, worker_class=PREFORK)
    try:
        horse = job_pid(connection, held, proc)

        proc.kill()

        wait_until(lambda: not is_running(horse), timeout=10, what=f"horse {horse} to die with its worker")
    finally:
        proc.kill()


def test_horses_are_replaced_promptly_while_rqs_scheduler_runs(redis_url, queue, tmp_path):
    # Given a worker with rq's scheduler: a process forked from the worker after its first horse
    proc = start_worker(
        redis_url, ["prefork"], tmp_path=tmp_path, worker_class=QUICK, extra_args=["--with-scheduler"]
    )
    try:
        wait_until(
            lambda: "Scheduler for prefork started" in proc.output(), timeout=15, what="rq's scheduler"
        )

        # When its first horse is replaced after three jobs
        jobs = [queue.enqueue(prefork_jobs.horse_pid) for _ in range(4)]
        status_becomes(jobs[3], JobStatus.FINISHED)
    finally:
        proc.stop()

    # Then that horse exited when told to; it did not have to be killed
    assert jobs[2].return_value() != jobs[3].return_value()
    assert "did not exit when retired" not in proc.log_path.read_text()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_jobs_per_horse", 0), ("max_horse_rss_mb", -1.0), ("horse_kill_grace_seconds", -5.0)],
)
def test_a_bad_limit_is_refused_naming_it(connection, setting, value):
    with pytest.raises(ValueError, match=f"PreforkRetryWorker: {setting} must be .*, got {value!r}"):
        PreforkRetryWorker(["prefork"], connection=connection, **{setting: value})
