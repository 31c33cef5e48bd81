"""Jobs and worker classes for the crash, shutdown and reconnect tests; importable by subprocess workers.

A job reports through Redis what the test needs to see: how often it ran (`runs`), the pid of the
process running it (`pid`, the work horse under `RetryWorker`), and whether a run began while the
process of an earlier run was still alive (`overlap`). `hang_first_run` blocks its first run until
the test sets `release`, so a test can crash, signal or cut off the worker while the job runs.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import threading
import time

import psutil
import redis
from rq import Queue, get_current_job
from rq.job import Job

from tests.support.processes import Proc
from tests.support.waiting import wait_until
from worker import PreforkRetryWorker
from worker.safety import leases
from worker.workers import RetryWorker, SimpleRetryWorker

#: Longest a job waits for its release, seconds: a bound, not a timing the tests rely on.
RELEASE_WAIT_SECONDS = 60.0


def key(job_id: str, what: str) -> str:
    return f"test:crash:{job_id}:{what}"


def _current() -> Job:
    job = get_current_job()
    assert job is not None
    return job


def hang_first_run() -> str:
    """Block the first run until `key(id, "release")` is set; later runs return at once."""
    job = _current()
    conn = job.connection
    run = int(conn.incr(key(job.id, "runs")))
    previous = conn.getset(key(job.id, "pid"), os.getpid())
    if previous is not None and is_running(int(previous)):
        conn.set(key(job.id, "overlap"), int(previous))
    if run == 1:
        deadline = time.monotonic() + RELEASE_WAIT_SECONDS
        while not conn.exists(key(job.id, "release")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id}: never released")
            time.sleep(0.02)
    return f"done on run {run}"


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie awaiting its parent)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def quick() -> str:
    job = _current()
    job.connection.incr(key(job.id, "runs"))
    return "quick"


class FastRetryWorker(RetryWorker):
    """`RetryWorker` with a 5 s lease (renewed every second) and a scan every half second.

    Its run is fenced 25/6 s after its last renewal got through; reconnect attempts at most half a
    second apart reach a Redis that is back within a second well before that.
    """

    lease_ttl = 5.0
    recovery_interval = 0.5
    reconnect_backoff_cap = 0.5


class FastSimpleRetryWorker(SimpleRetryWorker):
    """`SimpleRetryWorker` with the same short lease, scan and reconnect attempts."""

    lease_ttl = 5.0
    recovery_interval = 0.5
    reconnect_backoff_cap = 0.5


class FastPreforkRetryWorker(PreforkRetryWorker):
    """`PreforkRetryWorker` with the same short lease, scan and reconnect attempts."""

    lease_ttl = 5.0
    recovery_interval = 0.5
    reconnect_backoff_cap = 0.5


class Partition:
    """A TCP proxy in front of Redis that a test can cut (no byte passes, connections stay open) and mend.

    A worker connected through it is cut off from a Redis that stays up: a network partition.
    """

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.passing = threading.Event()
        self.passing.set()
        self._closed = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="partition-proxy", daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self) -> None:
        self.passing.clear()

    def mend(self) -> None:
        self.passing.set()

    def close(self) -> None:
        self._closed.set()
        self.passing.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            if not self.passing.wait(0.05):
                continue
            for key, _ in self._selector.select(0.05):
                if key.fileobj is self.listener:
                    client, _ = self.listener.accept()
                    upstream = socket.create_connection(("127.0.0.1", self.redis_port))
                    self._selector.register(client, selectors.EVENT_READ, upstream)
                    self._selector.register(upstream, selectors.EVENT_READ, client)
                    continue
                sock, peer = key.fileobj, key.data
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    if data:
                        peer.sendall(data)
                        continue
                except OSError:
                    pass
                for end in (sock, peer):
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(end)
                    end.close()  # type: ignore[union-attr]


class _KilledAfterDequeue:
    """SIGKILLs its own process (as `kill -9` or the OOM killer would) right after taking a job,
    before starting it: in rq's loop, between `dequeue_job_and_maintain_ttl` and `execute_job`."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class KilledAfterDequeueRetryWorker(_KilledAfterDequeue, FastRetryWorker):
    pass


class KilledAfterDequeueSimpleRetryWorker(_KilledAfterDequeue, FastSimpleRetryWorker):
    pass


class KilledAfterDequeuePreforkRetryWorker(_KilledAfterDequeue, FastPreforkRetryWorker):
    pass


def expired_lease(connection: redis.Redis, queue: Queue, member: str = "job-1:execution-1") -> str:
    """A started job whose worker stopped renewing its lease: a lease that has just run out; its member."""
    with connection.pipeline() as pipeline:
        pipeline.zadd(queue.started_job_registry.key, {member: time.time() + 60})
        leases.add_lease(pipeline, queue.name, member, ttl=0.001)
        pipeline.execute()
    wait_until(
        lambda: leases.expired_members(connection, queue.name) == [member],
        timeout=5,
        what="the lease to run out",
    )
    return member


def wait_started(connection: redis.Redis, job: Job, proc: Proc, timeout: float = 30.0) -> int:
    """Wait for the job's first run to begin (its worker must stay alive); the pid running it."""

    def started() -> bytes | None:
        assert proc.alive(), proc.output()[-3000:]
        value: bytes | None = connection.get(key(job.id, "pid"))
        return value

    return int(wait_until(started, timeout=timeout, what=f"job {job.id} to start"))
