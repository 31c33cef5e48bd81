"""Corrupt, truncated and hostile jobs pushed straight onto the queues: each fails clearly, nothing runs.

Three workers (fork per job, simple, prefork) serve high, default and low. The jobs of
`tests.chaos.hostile` are pushed past the app, as anyone who can write to Redis could. Each must end
in a failed registry with an error that says what was wrong; the workers stay up (the same pids);
no chaos receiver runs; no canary file appears (``os.system`` or the unregistered canary would
create one); and a proper job sent afterwards still runs. Jobs naming other code or carrying pickles
are refused by the workers' job gate (RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"], ["ACCEPT_PICKLE"]).
"""

from __future__ import annotations

import time
import zlib
from collections import Counter

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from tests.chaos import hostile
from tests.chaos.harness import QUEUE_NAMES, Ledger, Outcome, send, wait_for_all
from tests.support.waiting import wait_until
from worker.serializers import JSONSerializer

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def failure_text(connection: redis.Redis, job_id: str) -> str:
    """The error a failed job records: its latest failure result, else the exc_info of its hash.

    Read as JSON, as the app reads jobs: a pickled hostile job is never unpickled here either.
    """
    try:
        result = Job.fetch(job_id, connection=connection, serializer=JSONSerializer).latest_result()
        if result is not None and result.exc_string:
            return result.exc_string
    except Exception as exc:  # an unreadable hash: rq cannot build the Job
        fallback = f"(Job.fetch: {type(exc).__name__})"
    else:
        fallback = ""
    raw = connection.hget(Job.key_for(job_id), "exc_info")
    return zlib.decompress(raw).decode(errors="replace") if raw else fallback


def failed_ids(connection: redis.Redis) -> set[str]:
    return {
        job_id
        for name in QUEUE_NAMES
        for job_id in FailedJobRegistry(name, connection=connection).get_job_ids()
    }


def start_workers(worker_pool, server):
    return worker_pool.start_many(server, ("fork", "simple", "prefork"))


def test_hostile_jobs_on_the_signal_path_fail_clearly_and_run_nothing(
    chaos_redis, worker_pool, chaos_receivers, sentinel_dir, full_size, report
):
    count = 1000 if full_size else 100
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    procs = start_workers(worker_pool, chaos_redis)
    kinds = hostile.signal_path_jobs + hostile.corrupt_hashes + hostile.hostile_policies

    # When hostile jobs are pushed straight onto the queues
    pushed = list(hostile.push_all(connection, kinds, count, sentinel_dir, QUEUE_NAMES))

    # Then each one ends in a failed registry ...
    ids = {job_id for _, job_id in pushed}
    try:
        wait_until(lambda: ids <= failed_ids(connection), timeout=120, what="every hostile job to fail")
    finally:
        landed = ids & failed_ids(connection)
        unclear = Counter(
            hostile_kind.kind
            for hostile_kind, job_id in pushed
            if job_id in landed and hostile_kind.expect not in failure_text(connection, job_id)
        )
        ran = Ledger.read(connection).started
        report(
            Outcome(
                "hostile jobs (signal path, corrupt)",
                sent=len(pushed),
                ran=sum(ran.values()),
                lost=0,
                overlaps=0,
                failed_as_expected=len(landed) - sum(unclear.values()),
                seconds=time.monotonic() - began,
                note=f"{len(kinds)} kinds; canary files: {len(list(sentinel_dir.iterdir()))}",
            )
        )
    # ... with an error that says what was wrong (the receiver id, the payload, the stored hash) ...
    assert not unclear, dict(unclear)
    samples = {
        kind.kind: failure_text(connection, job_id).strip().splitlines()[-1] for kind, job_id in pushed
    }
    print("\n".join(f"{kind}: {line[:160]}" for kind, line in samples.items()))
    # ... no receiver ran and nothing outside the registered receivers was called ...
    assert ran == {}
    assert list(sentinel_dir.iterdir()) == []
    # ... nothing named in a retry policy was imported (`this` would print the Zen of Python) ...
    assert "Beautiful is better than ugly" not in worker_pool.logs()
    # ... and the workers that failed them are the ones still serving: a proper job runs.
    assert all(proc.alive() for proc in procs), worker_pool.logs()[-5000:]
    sent = send(chaos_receivers.work_default, ["after-the-storm"])
    wait_for_all(connection, sent, timeout=60, what="a proper job after the hostile ones")
    assert all(proc.alive() for proc in procs)
    connection.close()


def test_jobs_naming_other_code_or_carrying_pickles_run_nothing(
    chaos_redis, worker_pool, chaos_receivers, sentinel_dir, full_size, report
):
    count = 80 if full_size else 16
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    procs = start_workers(worker_pool, chaos_redis)

    # When jobs naming a function other than run_receiver, or carrying pickles, are pushed
    pushed = list(hostile.push_all(connection, hostile.code_running_jobs, count, sentinel_dir, QUEUE_NAMES))
    ids = {job_id for _, job_id in pushed}

    # Then none of them runs code: each fails, with an error saying what was refused ...
    def settled() -> bool:
        finished = {
            job_id for name in QUEUE_NAMES for job_id in connection.zrange(f"rq:finished:{name}", 0, -1)
        }
        return ids <= failed_ids(connection) | {job_id.decode() for job_id in finished}

    try:
        wait_until(settled, timeout=60, what="every job naming other code to fail (or run)")
    finally:
        canaries = sorted(path.name for path in sentinel_dir.iterdir())
        landed = ids & failed_ids(connection)
        unclear = Counter(
            kind.kind
            for kind, job_id in pushed
            if job_id in landed and kind.expect not in failure_text(connection, job_id)
        )
        report(
            Outcome(
                "hostile jobs (other code, pickles)",
                sent=len(pushed),
                ran=len(canaries),
                lost=0,
                overlaps=0,
                failed_as_expected=len(landed) - sum(unclear.values()),
                seconds=time.monotonic() - began,
                note=f"{len(hostile.code_running_jobs)} kinds; canary files: {canaries[:4]}",
            )
        )
    assert canaries == []
    assert ids <= landed
    assert not unclear, dict(unclear)
    samples = {
        kind.kind: failure_text(connection, job_id).strip().splitlines()[-1] for kind, job_id in pushed
    }
    print("\n".join(f"{kind}: {line[:160]}" for kind, line in samples.items()))
    # ... no receiver ran, and the workers that refused them are the ones still serving
    assert Ledger.read(connection).started == {}
    assert all(proc.alive() for proc in procs), worker_pool.logs()[-5000:]
    sent = send(chaos_receivers.work_default, ["after-the-refusals"])
    wait_for_all(connection, sent, timeout=60, what="a proper job after the refused ones")
    assert all(proc.alive() for proc in procs)
    connection.close()
