"""A worker's background threads outlive anything raised in them, `SystemExit` included, and say so.

A `SystemExit` raised in a thread ends that thread without a word: before, a job policy naming
`venv.__main__` stopped a worker's crash recovery for good while the worker went on taking jobs.
Each thread here meets one `SystemExit` (and the chores an error), then must do its duty again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from rq import Queue
from rq.command import send_shutdown_command

from tests.support.processes import start_worker
from tests.support.waiting import wait_until
from worker import SimpleRetryWorker
from worker.maintenance.chores import register_maintenance, run_due_maintenance, unregister_maintenance
from worker.retries.promoter import Promoter
from worker.safety.fencing import Fence
from worker.safety.leases import LeaseKeeper


class Once:
    """Raises `SystemExit` on its first call, then counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: object) -> bool:
        with self.lock:
            self.calls += 1
            if self.calls == 1:
                raise SystemExit(2)
        return True


@pytest.fixture
def chore() -> Iterator[Once]:
    once = Once()
    name = register_maintenance(once, 60, name="tests.exits")
    yield once
    unregister_maintenance(name)


def test_a_chore_that_raises_system_exit_is_logged_and_the_pass_goes_on(chore, caplog):
    with caplog.at_level(logging.ERROR, logger="worker.maintenance.chores"):
        ran = run_due_maintenance(force=True)
        run_due_maintenance(force=True)

    assert "tests.exits" in ran
    assert chore.calls == 2
    assert "Maintenance tests.exits: failed; next try in 60.0s (SystemExit: 2)" in caplog.text


def test_the_lease_keeper_renews_again_after_a_renewal_raised_system_exit(caplog):
    renew = Once()
    keeper = LeaseKeeper(renew, 0.05, name="test-lease-keeper")
    job = type("FakeJob", (), {"id": "job-1"})()
    with caplog.at_level(logging.ERROR, logger="worker.safety.leases"):
        keeper.arm(job, None)  # type: ignore[arg-type]
        try:
            wait_until(lambda: renew.calls >= 3, timeout=10, what="renewals after the SystemExit")
        finally:
            keeper.close()
    assert "Job job-1: lease renewal: failed; next in 0.05s (SystemExit: 2)" in caplog.text


def test_the_fence_stops_the_run_again_after_a_stop_raised_system_exit(caplog):
    stop = Once()
    log = logging.getLogger("tests.fence")
    fence = Fence(stop, lease_ttl=0.3, margin=0.1, log=log, name="test-fence")
    with caplog.at_level(logging.ERROR, logger="tests.fence"):
        fence.arm("job-1", 0.0)  # its lease counts from long ago: fenced at once
        try:
            wait_until(lambda: stop.calls >= 2, timeout=10, what="a second try to stop the fenced run")
        finally:
            fence.close()
    assert "Job job-1: stopping its fenced run: failed" in caplog.text and "SystemExit: 2" in caplog.text


class ExitingOncePromoter(Promoter):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.once = Once()

    def _cycle(self, pubsub: object) -> None:
        self.once()
        super()._cycle(pubsub)  # type: ignore[arg-type]


def test_the_promoter_goes_on_promoting_after_system_exit(connection, caplog):
    queue = Queue("default", connection=connection)
    promoter = ExitingOncePromoter(connection, [queue], job_class=queue.job_class, name="p1", idle_check=0.05)
    with caplog.at_level(logging.WARNING, logger="worker.retries.promoter"):
        promoter.start()
        try:
            wait_until(
                lambda: promoter.once.calls >= 3, timeout=10, what="promotion cycles after the SystemExit"
            )
            assert promoter._thread.is_alive()
        finally:
            promoter.stop()
    assert "SystemExit" in caplog.text


class ExitingOnceWorker(SimpleRetryWorker):
    recovery_interval = 0.05

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.once = Once()

    def recover_crashed_jobs(self) -> int:
        self.once()
        return 0


def test_the_recovery_thread_scans_again_after_a_scan_raised_system_exit(connection, caplog):
    worker = ExitingOnceWorker([Queue("default", connection=connection)], connection=connection)
    thread = threading.Thread(target=worker.recovery._loop, daemon=True)
    with caplog.at_level(logging.ERROR):
        thread.start()
        try:
            wait_until(lambda: worker.once.calls >= 3, timeout=10, what="recovery scans after the SystemExit")
        finally:
            worker.recovery.stop()
            thread.join(5)
    assert f"Worker {worker.name}: recovery scan: failed; next in 0.05s (SystemExit: 2)" in caplog.text


def test_the_pubsub_thread_takes_commands_after_a_malformed_one(connection, redis_url, tmp_path):
    # Given a worker listening for rq's commands on its pub/sub channel
    worker = start_worker(redis_url, ["default"], tmp_path=tmp_path, extra_args=["-n", "survivor"])
    try:
        wait_until(
            lambda: connection.pubsub_numsub("rq:pubsub:survivor")[0][1] == 1, timeout=30, what="subscribed"
        )
        # When someone publishes something that is not a command, then a real shutdown command
        connection.publish("rq:pubsub:survivor", b"not json")
        send_shutdown_command(connection, "survivor")

        # Then the thread was still listening: the worker shuts down as told
        assert worker.wait(30) == 0, worker.output()[-3000:]
        assert "Worker survivor: pubsub command: failed; carrying on (JSONDecodeError" in worker.output()
    finally:
        worker.stop()
