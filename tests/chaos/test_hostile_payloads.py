"""Corrupt, truncated and hostile jobs pushed straight onto the queues: each fails clearly, nothing runs.

Three workers (fork per job, simple, prefork) serve high, default and low. The jobs of
`tests.chaos.hostile` are pushed past the app, as anyone who can write to Redis could. Each must end
in a failed registry with an error that says what was wrong; the workers stay up (the same pids);
no chaos receiver runs; no canary file appears (``os.system`` or the unregistered canary would
create one); and a proper job sent afterwards still runs. Jobs naming other code or carrying pickles
are refused by the workers' job gate (RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"], ["ACCEPT_PICKLE"]).
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from rq.job import Job
from rq.registry import FailedJobRegistry

from tests.chaos import hostile
from tests.chaos.harness import QUEUE_NAMES, Ledger, Outcome, send, wait_for_all
from tests.settings import SETTINGS_ENV
from tests.support import http_sink
from tests.support.waiting import wait_until
from worker.gate.limits import JobLimits, bounded_job_class
from worker.serializers import JSONSerializer

BOUNDED_JOB = bounded_job_class(Job, JobLimits())

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def failure_text(connection: redis.Redis, job_id: str) -> str:
    """The error a failed job records: its newest failure result, else the exc_info of its hash.

    Read as JSON, as the app reads jobs: a pickled hostile job is never unpickled here either. All
    its results are read, as django-rq's job page does, within the limits (a bomb there is a note).
    """
    try:
        job = BOUNDED_JOB.fetch(job_id, connection=connection, serializer=JSONSerializer)
        for result in job.results():
            if result.exc_string:
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
    kinds = hostile.signal_path_jobs + hostile.corrupt_hashes + hostile.costly_jobs + hostile.hostile_policies

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
                "hostile jobs (signal path, corrupt, costly)",
                sent=len(pushed),
                ran=sum(ran.values()),
                lost=0,
                overlaps=0,
                failed_as_expected=len(landed) - sum(unclear.values()),
                seconds=time.monotonic() - began,
                note=f"{len(kinds)} kinds; canary files: {len(list(sentinel_dir.iterdir()))}",
            )
        )
    # ... with an error that says what was wrong (receiver id, payload, stored hash, limit) ...
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


def test_edge_webhooks_forged_ids_and_junk_fail_clearly_and_block_nothing(
    chaos_redis, worker_pool, chaos_receivers, sentinel_dir, full_size, report
):
    count = 80 if full_size else 16
    junk = 100_000 if full_size else 9_000
    began = time.monotonic()
    connection = redis.Redis.from_url(chaos_redis.url)
    sinks = [http_sink.serve_sink(), http_sink.serve_sink()]
    sink, elsewhere = (next(serving) for serving in sinks)
    try:
        # Given workers whose gate allows webhooks under <sink>/rq/, that URL answering 302 to
        # another loopback port, and junk ids left in the queues' intermediate lists
        sink.redirects[hostile.REDIRECTED_PATH] = f"{elsewhere.url}/admin/secret"
        hostile.push_junk(connection, QUEUE_NAMES, junk)
        connection.config_set("slowlog-log-slower-than", 10_000)  # Redis's default: 10 ms
        connection.slowlog_reset()
        worker_pool.env[SETTINGS_ENV] = json.dumps({"ALLOWED_WEBHOOK_URLS": [f"{sink.url}/rq/"]})
        # ... and ids rq refuses in the started registries, and a disguised header, before they start
        early_kinds = hostile.startup_edge_jobs(sink.url)
        early = list(
            hostile.push_all(connection, early_kinds, len(early_kinds) * 2, sentinel_dir, QUEUE_NAMES)
        )
        procs = start_workers(worker_pool, chaos_redis)
        kinds = hostile.edge_jobs(sink.url) + early_kinds

        # When jobs at the edges of the gate and of rq's job ids are pushed
        pushed = early + list(
            hostile.push_all(connection, kinds[: -len(early_kinds)], count, sentinel_dir, QUEUE_NAMES)
        )
        ids = {job_id for _, job_id in pushed}
        colons = {job_id for _, job_id in pushed if ":" in job_id}

        def junk_left() -> int:
            return sum(connection.llen(f"rq:queue:{name}:intermediate") for name in QUEUE_NAMES)

        def queued() -> set[str]:
            lists = [f"rq:queue:{name}{suffix}" for name in QUEUE_NAMES for suffix in ("", ":intermediate")]
            return {item.decode(errors="replace") for key in lists for item in connection.lrange(key, 0, -1)}

        def dropped() -> set[str]:
            # An idle worker of several queues blocked in rq's own pop takes "<id>:forged" outright
            # and rq, reading it as job <id> (no such hash), skips it: never run, but not failed
            # either (the limit of rq's pop over several queues, see docs/guarantees.md).
            return colons - failed_ids(connection) - queued()

        # Then each fails, with an error naming what was wrong, and the junk is dropped
        try:
            wait_until(
                lambda: ids <= failed_ids(connection) | dropped(), timeout=60, what="every edge job to fail"
            )
            wait_until(
                lambda: junk_left() == 0, timeout=300 if full_size else 60, what="the junk to be dropped"
            )
        finally:
            landed = ids & failed_ids(connection)
            unclear = Counter(
                kind.kind
                for kind, job_id in pushed
                if job_id in landed and kind.expect not in failure_text(connection, job_id)
            )
            missing = sorted(f"{kind.kind}: {job_id}" for kind, job_id in pushed if job_id not in landed)
            slow = [
                entry for entry in connection.slowlog_get(128) if entry["command"].upper().startswith(b"EVAL")
            ]
            longest = max((entry["duration"] for entry in slow), default=0) / 1000
            report(
                Outcome(
                    "hostile jobs (webhook edges, forged ids)",
                    sent=len(pushed),
                    ran=sum(Ledger.read(connection).started.values()),
                    lost=0,
                    overlaps=0,
                    failed_as_expected=len(landed) - sum(unclear.values()),
                    seconds=time.monotonic() - began,
                    note=(
                        f"{len(kinds)} kinds; {junk} junk ids left {junk_left()}; scripts over 10 ms: "
                        f"{len(slow)} (longest {longest:.1f} ms); redirected: {len(elsewhere.paths)}"
                        + f"; ':' ids taken by rq's pop: {len(dropped())}"
                        + (f"; not failed: {missing[:3]}" if missing else "")
                    ),
                )
            )
        assert ids - landed <= dropped()
        assert not unclear, dict(unclear)
        samples = {
            kind.kind: failure_text(connection, job_id).strip().splitlines()[-1]
            for kind, job_id in pushed
            if job_id in landed
        }
        print("\n".join(f"{kind}: {line[:160]}" for kind, line in samples.items()))
        # ... the redirect was asked for and not followed, and no script blocked Redis 10 ms
        assert hostile.REDIRECTED_PATH in sink.paths
        assert elsewhere.paths == []
        assert slow == []
        # ... no receiver ran, the workers are the ones still serving, and the operator's listing
        # names each forged id and lists the rest
        assert Ledger.read(connection).started == {}
        assert all(proc.alive() for proc in procs), worker_pool.logs()[-5000:]
        out, err = StringIO(), StringIO()
        call_command("rqsignals", "failures", stdout=out, stderr=err)
        forged = {
            job_id
            for kind, job_id in pushed
            if kind.expect in (hostile.INVALID_ID, hostile.INVALID_REGISTRY_ID)
        }
        assert out.getvalue().endswith(f"\n{len(ids - forged)} failed call(s).\n")
        assert all(repr(job_id) in err.getvalue() for job_id in forged & landed)
        sent = send(chaos_receivers.work_default, ["after-the-edges"])
        wait_for_all(connection, sent, timeout=60, what="a proper job after the edge ones")
        assert all(proc.alive() for proc in procs)
    finally:
        for serving in sinks:
            serving.close()
        connection.close()
