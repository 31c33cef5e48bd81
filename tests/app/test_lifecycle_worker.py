"""The whole life of a receiver call, as lifecycle signals heard by a project, on real workers.

The journaled receivers of tests/receivers.py (`audit_invoice`, `reject_invoice`, `stall_first_run`)
have a listener on every lifecycle signal that writes what it was told to an `Effect` row, in
whichever process sent it: the test process for ``receiver_enqueued``, the worker (or its horse)
for the rest. `reject_invoice` also has a listener that raises on every signal.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.db import transaction
from rq.job import Job

from rq_signals import queues
from tests.receivers import invoice_audited, invoice_rejected, invoice_stalled
from tests.support.processes import REPO_ROOT, Proc
from tests.support.waiting import wait_until
from tests.testapp.models import Effect, Invoice
from worker.serializers import JSONSerializer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER_CLASSES = ("worker.SimpleRetryWorker", "worker.RetryWorker", "worker.PreforkRetryWorker")


def journal(receiver: str) -> list[tuple[str, dict]]:
    """What the listeners heard about `receiver`'s calls, in order: (signal, arguments)."""
    rows = Effect.objects.filter(receiver="journal").order_by("pk")
    return [(row.key, row.value) for row in rows if row.value["receiver"] == f"tests.receivers.{receiver}"]


def story(heard: list[tuple[str, dict]]) -> list[tuple[str, int]]:
    return [(name, details["attempt"]) for name, details in heard]


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_call_that_fails_once_is_heard_from_the_commit_to_its_success(run_worker, worker_class):
    # Given a committed transaction that sends invoice_audited (whose receiver fails its first attempt)
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="OBS-1")
        invoice_audited.send(sender="audit", invoice=invoice)
    [(name, enqueued)] = journal("audit_invoice")  # heard in this process, right after the commit
    assert name == "enqueued"

    # When a worker runs it, and its retry
    run_worker("--worker-class", worker_class)

    # Then each moment was heard once, in order, about the same job, with its attempt number
    heard = journal("audit_invoice")
    assert story(heard) == [
        ("enqueued", 1),
        ("started", 1),
        ("failed", 1),
        ("retrying", 1),
        ("started", 2),
        ("succeeded", 2),
    ]
    assert {details["job_id"] for _, details in heard} == {enqueued["job_id"]}
    assert {details["sender"] for _, details in heard} == {"audit_invoice"}
    assert {details["instance"] for _, details in heard} == {f"testapp.Invoice pk={invoice.pk}"}
    # ... with what each moment adds: the queue and the commit-to-Redis time, the queue wait, the retry
    assert enqueued["queue"] == "default"
    assert 0 <= enqueued["latency"] < 5
    started = [details for name, details in heard if name == "started"]
    assert all(0 <= details["wait"] < 30 for details in started)
    [(_, failed)] = [entry for entry in heard if entry[0] == "failed"]
    assert failed["will_retry"] is True and failed["exception"] == "Flaky"
    [(_, retrying)] = [entry for entry in heard if entry[0] == "retrying"]
    assert retrying["delay"] == 0.2 and retrying["exception"] == "Flaky"
    job = Job.fetch(
        enqueued["job_id"], connection=queues.get_queue("default").connection, serializer=JSONSerializer
    )
    first = job.meta["attempts"][0]
    assert datetime.fromisoformat(retrying["retry_at"]) == datetime.fromisoformat(
        first["ended_at"]
    ) + timedelta(seconds=0.2)


def test_a_call_that_runs_out_of_retries_is_heard_once_as_exhausted_whatever_its_listeners_raise(
    run_worker,
):
    # Given a receiver that always fails (1 retry), one of whose listeners raises on every signal
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="OBS-2")
        invoice_rejected.send(sender="review", invoice=invoice)

    # When a worker runs it and its retry
    log = run_worker()

    # Then the final failure is heard once, after the retry, and the job ended as it would have:
    # failed after two attempts (the listener's error is logged, never raised)
    heard = journal("reject_invoice")
    assert story(heard) == [
        ("enqueued", 1),
        ("started", 1),
        ("failed", 1),
        ("retrying", 1),
        ("started", 2),
        ("failed", 2),
        ("exhausted", 2),
    ]
    [(_, exhausted)] = [entry for entry in heard if entry[0] == "exhausted"]
    assert exhausted["exception"] == "Flaky"
    job_id = exhausted["job_id"]
    low = queues.get_queue("low")
    assert job_id in low.failed_job_registry.get_job_ids()
    job = Job.fetch(job_id, connection=low.connection, serializer=JSONSerializer)
    assert [attempt["outcome"] for attempt in job.meta["attempts"]] == ["retrying", "failed"]
    assert f"Job {job_id}: lifecycle listener" in log and "metrics backend down" in log


def test_a_killed_workers_call_is_heard_as_recovered_by_the_worker_that_took_it_over(tmp_path):
    # Given a worker running a call whose first run hangs, and a second worker on the same queue
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="OBS-3")
        invoice_stalled.send(sender="sync", invoice=invoice)
    first = _worker(tmp_path, "first")
    second = None
    try:
        wait_until(
            lambda: Effect.objects.filter(receiver="stall_first_run").exists(),
            timeout=30,
            what="the first worker to start the call",
        )
        second = _worker(tmp_path, "second")

        # When the first worker is killed outright
        first.kill()

        # Then the second worker takes the call over, says so, and runs it again to success
        wait_until(
            lambda: "succeeded" in dict(journal("stall_first_run")),
            timeout=60,
            what="the recovered call to succeed",
        )
    finally:
        first.kill()
        if second is not None:
            second.stop()
    heard = journal("stall_first_run")
    assert story(heard) == [
        ("enqueued", 1),
        ("started", 1),
        ("recovered", 1),
        ("retrying", 1),
        ("started", 2),
        ("succeeded", 2),
    ]
    assert [details["pid"] for name, details in heard if name == "started"] == [first.pid, second.pid]
    by_name = dict(heard)
    assert by_name["recovered"]["pid"] == second.pid
    assert by_name["recovered"]["exception"] == "WorkerCrashed"
    assert by_name["recovered"]["outcome"] == "retrying"
    assert by_name["recovered"]["dead_worker"].startswith("first-")
    assert by_name["retrying"]["exception"] == "WorkerCrashed" and 0 <= by_name["retrying"]["delay"] < 1


def _worker(tmp_path: Path, name: str) -> Proc:
    """`manage.py rqworker` with a 5 s lease (`FastSimpleRetryWorker`) on the default queue."""
    args = [
        sys.executable,
        str(REPO_ROOT / "tests" / "manage.py"),
        "rqworker",
        "--worker-class",
        "tests.worker.crash_jobs.FastSimpleRetryWorker",
        "--name",
        f"{name}-{tmp_path.name}",
        "default",
    ]
    env = {"RQ_SIGNALS_TEST_DB_NAME": str(db_connection.settings_dict["NAME"])}
    return Proc(args, env=env, log_path=tmp_path / f"{name}.log")
