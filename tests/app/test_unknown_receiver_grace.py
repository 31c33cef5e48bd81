"""A rolling deploy: a worker still on the older code takes a job for a receiver only the newer code has."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from rq.job import Job

from rq_signals import UnknownReceiver, UnknownReceiverInGrace, gate, queues
from rq_signals.jobs import in_grace, run_receiver
from worker.retries.backoff import Backoff

pytestmark = pytest.mark.django_db(transaction=True)

NEWER_RECEIVER = "tests.receivers.added_in_the_next_release"


def enqueue_from_newer_code() -> Job:
    """What the newer web process enqueues: a job for a receiver the worker (older code) lacks."""
    policy = Backoff(max_retries=2, base=0.0, jitter="none")
    return queues.get_queue("default").enqueue(
        run_receiver,
        NEWER_RECEIVER,
        "tests.receivers.invoice_paid",
        {"format": 1, "kwargs": {}},
        meta={"retry_policy": policy.to_dict()},
    )


def attempts(job: Job) -> list[dict]:
    fetched = Job.fetch(job.id, connection=job.connection, serializer=gate.job_serializer())
    return fetched.meta["attempts"]


def test_within_the_grace_an_unknown_receiver_is_retried_under_the_jobs_policy(run_worker):
    job = enqueue_from_newer_code()

    run_worker()

    history = attempts(job)
    assert [a["outcome"] for a in history] == ["retrying", "retrying", "failed"]
    assert {a["exc_type"] for a in history} == {"rq_signals.exceptions.UnknownReceiverInGrace"}
    assert (
        f"Job {job.id}: Receiver '{NEWER_RECEIVER}' is not registered in this process"
        in history[0]["message"]
    )
    assert "This process's code may be older than the sender's" in history[0]["message"]
    assert 'RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"] (600s)' in history[0]["message"]


def test_after_the_grace_it_fails_at_once_saying_the_workers_code_may_be_older(run_worker, monkeypatch):
    monkeypatch.setenv("RQ_SIGNALS_TEST_SETTINGS", json.dumps({"UNKNOWN_RECEIVER_GRACE": 0}))
    job = enqueue_from_newer_code()

    run_worker()

    [attempt] = attempts(job)
    assert attempt["outcome"] == "failed"
    assert attempt["exc_type"] == "rq_signals.exceptions.UnknownReceiver"
    assert "code may be older than the sender's (deploy it to the workers too)" in attempt["message"]


def test_the_grace_counts_from_the_jobs_creation():
    job = enqueue_from_newer_code()
    unknown = UnknownReceiver("Receiver 'x' is not registered in this process")

    assert isinstance(in_grace(unknown, job), UnknownReceiverInGrace)
    job.created_at = datetime.now(timezone.utc) - timedelta(minutes=11)
    assert in_grace(unknown, job) is None  # older than the 10-minute default: permanent
    assert in_grace(unknown, None) is None  # eager mode, no job: permanent


def test_e003_a_grace_that_is_not_a_number_of_seconds():
    from django.test import override_settings

    from rq_signals import checks

    for bad in (-1, "10m", True, float("inf")):
        with override_settings(RQ_SIGNALS={"UNKNOWN_RECEIVER_GRACE": bad}):
            [message] = checks.check_settings()
            assert message.id == "rq_signals.E003"
            expected = "a number of seconds >= 0 (0: no grace)"
            assert message.msg == f'RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"] must be {expected}, got {bad!r}.'
    with override_settings(RQ_SIGNALS={"UNKNOWN_RECEIVER_GRACE": 0}):
        assert checks.check_settings() == []
