"""Workers whose process runs a chore that holds a SQLite write transaction, and a job that writes.

For tests/worker/test_fork_during_chore.py. The database file is named by the
``TESTS_SQLITE_CHORE_DB`` environment variable of the worker. The chore runs every 50 ms; it does
something only once the test creates ``<db>.trigger``: it deletes that file, opens a write
transaction, creates ``<db>.held``, keeps the transaction open for `HOLD_SECONDS` (as a relay pass
on a slow database would) and commits.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from worker import PreforkRetryWorker, RetryWorker
from worker.maintenance.chores import register_maintenance

HOLD_SECONDS = 1.5
#: How long the job's write waits for the database lock (sqlite3's busy timeout).
WRITE_TIMEOUT_SECONDS = 5.0


def create_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE rows (writer TEXT)")
    connection.close()


def writers(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [writer for (writer,) in connection.execute("SELECT writer FROM rows ORDER BY rowid")]
    finally:
        connection.close()


def write_row(path: str, writer: str) -> None:
    """The job: one row, in a transaction of its own."""
    connection = sqlite3.connect(path, timeout=WRITE_TIMEOUT_SECONDS, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO rows VALUES (?)", (writer,))
        connection.execute("COMMIT")
    finally:
        connection.close()


def _hold_a_transaction() -> None:
    path = Path(os.environ["TESTS_SQLITE_CHORE_DB"])
    trigger = path.with_suffix(".trigger")
    if not trigger.exists():
        return
    trigger.unlink()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO rows VALUES ('chore')")
        path.with_suffix(".held").touch()
        time.sleep(HOLD_SECONDS)  # the slow transaction under test, not a wait for something
        connection.execute("COMMIT")
    finally:
        connection.close()


class ChoreRetryWorker(RetryWorker):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        register_maintenance(_hold_a_transaction, 0.05, name="tests.sqlite_chore")


class ChorePreforkWorker(PreforkRetryWorker):
    max_jobs_per_horse = 1  # a horse forked after every job: the next one is forked during the chore

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        register_maintenance(_hold_a_transaction, 0.05, name="tests.sqlite_chore")


def noop_for_prefork() -> None:
    """A job between the chore's start and the write: the prefork worker forks its next horse after it."""
