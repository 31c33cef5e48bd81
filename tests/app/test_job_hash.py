"""The job hashes we write directly read back as those rq's ``Queue.enqueue_many`` writes; workers run them.

We leave out the fields rq writes empty for a job that has not run; everything else is rq's, and
``Job.fetch`` (what workers and django-rq's dashboard use) builds the same job from both.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta, timezone

import pytest
import redis
from django.db import transaction
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from rq_signals import defaults, jobspec, jobwriter, outbox, queues
from tests.receivers import invoice_paid
from tests.testapp.models import Effect, Invoice
from worker.retries.backoff import Backoff

pytestmark = pytest.mark.django_db(transaction=True)

TIMESTAMPS = ("created_at", "enqueued_at")
#: What rq's ``Job.to_dict`` writes empty for a job not run yet (``Job.restore`` reads absent ones alike).
EMPTY_UNTIL_RUN = {
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
}
#: What rq builds from a job hash, beyond the call itself: all should match between ours and rq's.
RESTORED = (
    "func_name",
    "args",
    "kwargs",
    "description",
    "origin",
    "timeout",
    "meta",
    "result_ttl",
    "failure_ttl",
    "ttl",
    "worker_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "group_id",
    "_success_callback_name",
    "_failure_callback_name",
    "_stopped_callback_name",
    "_dependency_ids",
    "enqueue_at_front",
    "retries_left",
    "number_of_retries",
)


def spec(queue: str = "default", **overrides) -> jobspec.JobSpec:
    fields = {
        "queue": queue,
        "receiver_id": "tests.receivers.record_payment",
        "signal_path": "tests.signals.invoice_paid",
        "payload_json": jobspec.payload_text(
            {"kwargs": {"amount": 3, "note": "é ünïcode"}, "sender": "checkout"}
        ),
        "description": "tests.signals.invoice_paid sender='checkout' → tests.receivers.record_payment",
        "meta": {"retry_policy": Backoff(max_retries=2, base=0.5).to_dict()},
        "timeout": None,
    }
    return jobspec.JobSpec(**{**fields, **overrides})


def enqueue_with_rq(queue: Queue, job: jobspec.JobSpec, job_id: str) -> None:
    """The old way: rq builds a Job and saves it, in one pipeline, as `enqueue_many` does."""
    data = Queue.prepare_data(
        defaults.JOB_FUNCTION,
        args=job.job_args(),
        timeout=job.timeout,
        description=job.description,
        meta=job.meta,
        job_id=job_id,
    )
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many([data], pipeline=pipe)
        pipe.execute()


def enqueue_directly(queue: Queue, job: jobspec.JobSpec) -> None:
    jobwriter.write_jobs(
        queue.connection, queue, defaults.JOB_FUNCTION, [job], now=datetime.now(timezone.utc)
    )


def assert_same_hash(connection: redis.Redis, ours: str, theirs: str, serializer=None) -> None:
    mine = connection.hgetall(Job.key_for(ours))
    rqs = connection.hgetall(Job.key_for(theirs))
    # rq's fields but those it writes empty until the job runs
    assert {name.decode() for name in mine} == {name.decode() for name in rqs} - EMPTY_UNTIL_RUN
    assert all(rqs[name.encode()] == b"" for name in EMPTY_UNTIL_RUN)
    for name, value in mine.items():
        if name.decode() in TIMESTAMPS:
            # the same format, a moment apart
            delta = utcparse(value.decode()) - utcparse(rqs[name].decode())
            assert abs(delta) < timedelta(seconds=5), name
        elif name == b"data":
            # compressed as rq does; the same call (JSON spacing aside)
            ours_data, rq_data = zlib.decompress(value), zlib.decompress(rqs[name])
            if serializer is None:
                assert ours_data == rq_data
            else:
                assert json.loads(ours_data) == json.loads(rq_data)
        else:
            assert value == rqs[name], name
    # both live until a worker runs them
    assert connection.ttl(Job.key_for(ours)) == connection.ttl(Job.key_for(theirs)) == -1
    # and rq reads ours back as the job it would have built
    mine_job, rq_job = Job.fetch(ours, connection, serializer), Job.fetch(theirs, connection, serializer)
    for attribute in RESTORED:
        assert getattr(mine_job, attribute) == getattr(rq_job, attribute), attribute
    assert mine_job.get_status() == rq_job.get_status() == JobStatus.QUEUED
    assert mine_job.created_at.tzinfo is not None and mine_job.enqueued_at is not None


@pytest.mark.parametrize(
    "variant",
    [
        {},  # the queue's default timeout, a retry policy in meta
        {"timeout": 30},
        {"meta": {}},  # no retry policy: rq writes no meta field
        {"description": ""},  # rq falls back to the call string
    ],
    ids=["defaults", "timeout", "no-meta", "no-description"],
)
@pytest.mark.parametrize("serializer", [None, JSONSerializer], ids=["pickle", "json"])
def test_a_directly_written_job_reads_back_as_the_job_rq_writes(connection, variant, serializer):
    # Given a queue with its own default timeout and serializer
    queue = Queue("equivalence", connection=connection, default_timeout=77, serializer=serializer)
    job = spec(queue="equivalence", **variant)

    # When the same receiver job is enqueued by rq's enqueue_many and by write_jobs
    enqueue_with_rq(queue, job, job_id="enqueued-by-rq")
    enqueue_directly(queue, job)

    # Then both ids wait on the queue, the queue is known to rq, and both jobs read back the same
    assert queue.job_ids == ["enqueued-by-rq", job.job_id]
    assert queue.count == 2
    assert connection.smembers(Queue.redis_queues_keys) == {queue.key.encode()}
    assert_same_hash(connection, job.job_id, "enqueued-by-rq", serializer)


def test_a_committed_transaction_writes_each_job_as_rq_would(connection):
    # Given a committed transaction of several signals on two queues
    with transaction.atomic():
        invoices = [Invoice.objects.create(reference=f"INV-{n}") for n in range(3)]
        invoice_paid.send(sender="checkout", invoice=invoices[0], amount=7)
    high, default = queues.get_queue("high"), queues.get_queue("default")
    ids = {name: list(queue.job_ids) for name, queue in (("high", high), ("default", default))}
    assert len(ids["high"]) == 3 and len(ids["default"]) == 1

    # Then each job is the one rq would have enqueued from the same call
    for name, queue in (("high", high), ("default", default)):
        for job_id in ids[name]:
            job = Job.fetch(job_id, connection, queue.serializer)
            again = jobspec.JobSpec(
                queue=name,
                receiver_id=job.args[0],
                signal_path=job.args[1],
                payload_json=jobspec.payload_text(job.args[2]),
                description=job.description,
                meta=job.meta,
                timeout=None if job.timeout == 60 else job.timeout,  # 60: RQ_QUEUES' DEFAULT_TIMEOUT
            )
            enqueue_with_rq(queue, again, job_id=f"rq-{job_id}")
            assert_same_hash(connection, job_id, f"rq-{job_id}", queue.serializer)


def test_the_relay_writes_a_job_as_the_commit_path_does(connection):
    # Given a job of the "default" queue kept in the outbox (Redis refused it at commit)
    queue = queues.get_queue("default")
    job = spec(queue="default", timeout=30)
    relayed = outbox.OutboxJob.from_json(outbox.OutboxJob.from_spec(job).to_json())

    # When the relay enqueues it, and the same call is enqueued by rq's own enqueue_many
    sent = outbox.enqueue_once([relayed])
    enqueue_with_rq(queue, job, job_id="enqueued-by-rq")

    # Then the relay wrote it once, through the writer of the commit path: the hash rq reads back as its own
    assert sent.enqueued == [job.job_id]
    assert queue.job_ids == [job.job_id, "enqueued-by-rq"]
    assert_same_hash(connection, job.job_id, "enqueued-by-rq", queue.serializer)


def test_thousands_of_jobs_go_out_in_one_request_in_order(connection):
    # Given more jobs than one RPUSH of the script takes, two receivers' metas among them
    queue = Queue("many", connection=connection, serializer=JSONSerializer)
    jobs = [spec(queue="many", meta={} if n % 2 else spec().meta, timeout=n % 3 or None) for n in range(2500)]

    # When they are written in one call
    with connection.pipeline(transaction=False) as pipe:
        jobwriter.write_jobs(pipe, queue, defaults.JOB_FUNCTION, jobs, now=datetime.now(timezone.utc))
        assert len(pipe.command_stack) == 1
        pipe.execute()

    # Then every one waits on the queue in order, with its own timeout and meta
    assert queue.job_ids == [job.job_id for job in jobs]
    for job in (jobs[0], jobs[1], jobs[1001], jobs[2499]):
        fetched = Job.fetch(job.job_id, connection, JSONSerializer)
        assert fetched.args == list(job.job_args())
        assert fetched.meta == job.meta
        assert fetched.timeout == (job.timeout or queue._default_timeout)


def test_a_queue_class_of_its_own_or_a_synchronous_queue_still_goes_through_rq(connection):
    class AuditedQueue(Queue):
        pass

    assert jobwriter.writes_directly(queues.get_queue("default"))
    assert not jobwriter.writes_directly(AuditedQueue("audited", connection=connection))
    assert not jobwriter.writes_directly(Queue("inline", connection=connection, is_async=False))


@pytest.mark.slow
def test_a_worker_runs_the_jobs_written_directly(run_worker):
    # Given jobs written directly, one with a receiver's own timeout
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-7", total="5.00")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=5)
    assert jobwriter.writes_directly(queues.get_queue("high"))

    # When a SimpleRetryWorker drains the queues
    run_worker()

    # Then it ran each receiver once, and rq recorded each job as finished
    assert Effect.objects.filter(receiver="record_invoice").count() == 1
    assert [effect.value["amount"] for effect in Effect.objects.filter(receiver="record_payment")] == ["5"]
    for name in ("high", "default"):
        registry = queues.get_queue(name).finished_job_registry
        assert registry.count >= 1
        for job_id in registry.get_job_ids():
            assert (
                Job.fetch(
                    job_id, queues.get_queue(name).connection, queues.get_queue(name).serializer
                ).get_status()
                == JobStatus.FINISHED
            )
