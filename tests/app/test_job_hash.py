"""The job hashes we write directly are the ones rq's ``Queue.enqueue_many`` writes, and workers run them."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta, timezone

import pytest
import redis
from django.db import transaction
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from rq_signals import defaults, enqueue, queues
from tests.receivers import invoice_paid
from tests.testapp.models import Effect, Invoice
from worker.backoff import Backoff

pytestmark = pytest.mark.django_db(transaction=True)

TIMESTAMPS = ("created_at", "enqueued_at")


def spec(queue: str = "default", **overrides) -> enqueue.JobSpec:
    fields = {
        "queue": queue,
        "receiver_id": "tests.receivers.record_payment",
        "signal_path": "tests.signals.invoice_paid",
        "payload": {"kwargs": {"amount": 3, "note": "é ünïcode"}, "sender": "checkout"},
        "description": "tests.signals.invoice_paid sender='checkout' → tests.receivers.record_payment",
        "meta": {"retry_policy": Backoff(max_retries=2, base=0.5).to_dict()},
        "timeout": None,
    }
    return enqueue.JobSpec(**{**fields, **overrides})


def enqueue_with_rq(queue: Queue, job: enqueue.JobSpec, job_id: str) -> None:
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


def enqueue_directly(queue: Queue, job: enqueue.JobSpec) -> None:
    with queue.connection.pipeline() as pipe:
        queues.write_jobs(pipe, queue, defaults.JOB_FUNCTION, [job], now=datetime.now(timezone.utc))
        pipe.execute()


def assert_same_hash(connection: redis.Redis, ours: str, theirs: str) -> None:
    mine = connection.hgetall(Job.key_for(ours))
    rqs = connection.hgetall(Job.key_for(theirs))
    # the same fields, in the same order (Redis keeps a small hash's insertion order)
    assert list(mine) == list(rqs)
    for name, value in rqs.items():
        if name.decode() in TIMESTAMPS:
            # the same format, a moment apart
            delta = utcparse(mine[name].decode()) - utcparse(value.decode())
            assert abs(delta) < timedelta(seconds=5), name
        elif name == b"data":
            assert zlib.decompress(mine[name]) == zlib.decompress(value)
        else:
            assert mine[name] == value, name
    # both live until a worker runs them
    assert connection.ttl(Job.key_for(ours)) == connection.ttl(Job.key_for(theirs)) == -1


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
def test_a_directly_written_job_is_field_for_field_the_job_rq_writes(connection, variant, serializer):
    # Given a queue with its own default timeout and serializer
    queue = Queue("equivalence", connection=connection, default_timeout=77, serializer=serializer)
    job = spec(queue="equivalence", **variant)

    # When the same receiver job is enqueued by rq's enqueue_many and by write_jobs
    enqueue_with_rq(queue, job, job_id="enqueued-by-rq")
    enqueue_directly(queue, job)

    # Then both hashes hold the same fields, both ids wait on the queue, the queue is known to rq
    assert_same_hash(connection, job.job_id, "enqueued-by-rq")
    assert queue.job_ids == ["enqueued-by-rq", job.job_id]
    assert queue.count == 2
    assert connection.smembers(Queue.redis_queues_keys) == {queue.key.encode()}
    # and rq reads ours back as the job it would have built
    ours, theirs = (
        Job.fetch(job.job_id, connection, serializer),
        Job.fetch("enqueued-by-rq", connection, serializer),
    )
    for attribute in (
        "func_name",
        "args",
        "kwargs",
        "description",
        "origin",
        "timeout",
        "meta",
        "result_ttl",
    ):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.get_status() == theirs.get_status() == JobStatus.QUEUED


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
            again = enqueue.JobSpec(
                queue=name,
                receiver_id=job.args[0],
                signal_path=job.args[1],
                payload=job.args[2],
                description=job.description,
                meta=job.meta,
                timeout=None if job.timeout == 60 else job.timeout,  # 60: RQ_QUEUES' DEFAULT_TIMEOUT
            )
            enqueue_with_rq(queue, again, job_id=f"rq-{job_id}")
            assert_same_hash(connection, job_id, f"rq-{job_id}")


def test_a_queue_class_of_its_own_or_a_synchronous_queue_still_goes_through_rq(connection):
    class AuditedQueue(Queue):
        pass

    assert queues.writes_directly(queues.get_queue("default"))
    assert not queues.writes_directly(AuditedQueue("audited", connection=connection))
    assert not queues.writes_directly(Queue("inline", connection=connection, is_async=False))


@pytest.mark.slow
def test_a_worker_runs_the_jobs_written_directly(run_worker):
    # Given jobs written directly, one with a receiver's own timeout
    with transaction.atomic():
        invoice = Invoice.objects.create(reference="INV-7", total="5.00")
        invoice_paid.send(sender="checkout", invoice=invoice, amount=5)
    assert queues.writes_directly(queues.get_queue("high"))

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
