"""A work horse forked while a maintenance chore holds a database transaction can still write.

SQLite keeps its lock state per process: a child forked while another thread of its parent is in a
write transaction inherits a lock that nothing in the child releases, and its own writes fail with
"database is locked". The outbox relay is such a chore; the chaos run found its jobs failing this way.
Workers therefore never fork while a chore runs.
"""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from tests.worker import sqlite_chore

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("worker_class", ["ChoreRetryWorker", "ChorePreforkWorker"])
def test_a_job_forked_while_a_chore_holds_a_transaction_still_writes(
    redis_url, connection: redis.Redis, tmp_path, worker_class
):
    database = tmp_path / "chore.sqlite3"
    sqlite_chore.create_database(database)
    queue = Queue("default", connection=connection)
    worker = start_worker(
        redis_url,
        ["default"],
        tmp_path=tmp_path,
        worker_class=f"tests.worker.sqlite_chore.{worker_class}",
        env={"TESTS_SQLITE_CHORE_DB": str(database)},
    )
    try:
        # Given a worker that has run a job (a prefork worker then forks its next horse)
        first = queue.enqueue(sqlite_chore.write_row, str(database), "before")
        wait_until(
            lambda: first.get_status(refresh=True) == JobStatus.FINISHED, timeout=30, what="a first job"
        )

        # When its chore holds a write transaction while a job arrives
        database.with_suffix(".trigger").touch()
        wait_until(database.with_suffix(".held").exists, timeout=10, what="the chore's transaction")
        queue.enqueue(sqlite_chore.noop_for_prefork)
        job = queue.enqueue(sqlite_chore.write_row, str(database), "job")

        # Then the job writes its row, after the chore's, and does not fail
        wait_until(
            lambda: (
                job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SCHEDULED)
            ),
            timeout=30,
            what="the job to end",
        )
        assert job.get_status(refresh=True) == JobStatus.FINISHED, job.meta.get("attempts")
        assert sqlite_chore.writers(database) == ["before", "chore", "job"]
    finally:
        worker.stop()
