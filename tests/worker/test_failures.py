"""What an operator sees and does with failed jobs: list, filter, requeue with a fresh budget, purge.

Jobs fail for real: they are enqueued on the private Redis and run by an in-process rq SimpleWorker.
"""

from __future__ import annotations

import os
import signal
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from django_rq.utils import get_jobs
from rq import Queue, get_current_job
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.utils import utcformat

from tests.support.upstream import RqSimpleWorker as SimpleWorker
from tests.support.upstream import RqWorker as Worker
from tests.worker import jobs
from worker import ATTEMPTS_META_KEY, Attempt, NoSuchFailedJob
from worker.retries.attempts import BUDGET_START_META_KEY, retries_used, utcnow
from worker.retries.failures import ErrorSummary, FailedJob, FailureRegistry
from worker.serializers import JSONSerializer

HERE = __name__  # the dotted module path rq stores for the job functions below


class PaymentDeclinedError(Exception):
    pass


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def explode(*args, **kwargs):
    raise ValueError(f"boom {args[0] if args else ''}".strip())


def decline(order_id):
    raise PaymentDeclinedError(f"order {order_id}: card declined")


def explode_while_handling():
    try:
        raise KeyError("first")
    except KeyError as exc:
        raise PaymentDeclinedError("second") from exc


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def fails_until_fixed():
    if not get_current_job().connection.exists("fixed"):
        raise RuntimeError("not fixed yet")
    return "ok"


@pytest.fixture
def queue(connection):
    return Queue("default", connection=connection)


@pytest.fixture
def failures(queue):
    return FailureRegistry(queue)


def fail(queue, func, *args, **kwargs) -> Job:
    """Enqueue `func` and run it to failure with an in-process worker."""
    job = queue.enqueue(func, *args, **kwargs)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert job.get_status() == JobStatus.FAILED, f"job {job.id} did not fail"
    return job


def attempt(number: int, exc_type: str, message: str, outcome="retrying") -> Attempt:
    return Attempt(
        attempt=number,
        started_at="2026-01-01T00:00:00+00:00",
        ended_at=f"2026-01-01T00:0{number}:00+00:00",
        worker="w1",
        outcome=outcome,
        exc_type=exc_type,
        message=message,
        traceback=f"Traceback...\n{exc_type}: {message}",
        delay=0.5 * number if outcome == "retrying" else None,
    )


def record_attempts(job: Job, attempts: list[Attempt]) -> None:
    """Write the history as RetryMixin does: Attempt dicts in job.meta["attempts"]."""
    job = Job.fetch(job.id, connection=job.connection)
    job.meta[ATTEMPTS_META_KEY] = [a.to_dict() for a in attempts]
    job.save_meta()


def set_failed_at(job: Job, moment: datetime) -> None:
    job.connection.hset(job.key, "ended_at", utcformat(moment))


def test_a_job_failed_by_plain_rq_shows_its_call_error_and_time(queue, failures):
    before = utcnow()
    job = fail(queue, explode, 7, "two", key=[1, 2])

    [entry] = failures.list()

    assert isinstance(entry, FailedJob)
    assert entry.job_id == job.id
    assert entry.func == f"{HERE}.explode"
    assert entry.args == "7, 'two', key=[1, 2]"
    assert entry.attempts == ()
    assert entry.last_error == ErrorSummary("ValueError", "boom 7")
    assert before <= entry.failed_at <= utcnow()
    assert entry.failed_at.tzinfo is not None
    assert failures.count() == 1


def test_custom_and_chained_exceptions_are_named_by_their_dotted_path(queue, failures):
    fail(queue, decline, 42)
    fail(queue, explode_while_handling)

    errors = {entry.func: entry.last_error for entry in failures.list()}

    assert errors == {
        f"{HERE}.decline": ErrorSummary(f"{HERE}.PaymentDeclinedError", "order 42: card declined"),
        f"{HERE}.explode_while_handling": ErrorSummary(f"{HERE}.PaymentDeclinedError", "second"),
    }


def test_attempt_history_comes_from_meta_and_its_last_error_wins(queue, failures):
    job = fail(queue, explode, 1)
    history = [
        attempt(1, "ConnectionError", "refused"),
        attempt(2, "TimeoutError", "timed out"),
        attempt(3, f"{HERE}.PaymentDeclinedError", "declined", outcome="failed"),
    ]
    record_attempts(job, history)

    [entry] = failures.list()

    assert entry.attempts == tuple(history)
    assert entry.last_error == ErrorSummary(f"{HERE}.PaymentDeclinedError", "declined")


def test_lists_the_same_jobs_as_the_django_rq_dashboard(queue, failures):
    jobs = [fail(queue, explode, n) for n in range(3)]
    registry = FailedJobRegistry(queue.name, queue.connection)

    dashboard = get_jobs(queue, registry.get_job_ids(), registry)

    assert (
        {entry.job_id for entry in failures.list()} == {job.id for job in dashboard} == {j.id for j in jobs}
    )
    assert failures.count() == len(registry) == 3


def test_newest_failures_come_first(queue, failures):
    old, new = fail(queue, explode, 1), fail(queue, explode, 2)
    set_failed_at(old, utcnow() - timedelta(hours=1))

    assert [entry.job_id for entry in failures.list()] == [new.id, old.id]


def test_filters_by_function_exception_type_and_time(queue, failures):
    value_error = fail(queue, explode, 1)
    declined = fail(queue, decline, 2)
    set_failed_at(value_error, datetime(2026, 1, 1, tzinfo=timezone.utc))

    def ids(**filters):
        return [entry.job_id for entry in failures.list(**filters)]

    assert ids(func=f"{HERE}.decline") == [declined.id]
    assert ids(func="decline") == []  # exact dotted path only
    assert ids(exc_type="ValueError") == [value_error.id]
    assert ids(exc_type="builtins.ValueError") == [value_error.id]
    assert ids(exc_type="PaymentDeclinedError") == [declined.id]
    assert ids(exc_type=f"{HERE}.PaymentDeclinedError") == [declined.id]
    assert ids(exc_type="other.PaymentDeclinedError") == []
    assert ids(since=datetime(2026, 1, 2, tzinfo=timezone.utc)) == [declined.id]
    assert ids(since=datetime(2026, 1, 2)) == [declined.id]  # naive means UTC
    assert ids(func=f"{HERE}.explode", exc_type="PaymentDeclinedError") == []


def test_requeue_puts_the_job_back_with_its_history_and_a_fresh_budget(queue, failures):
    job = fail(queue, explode, 1)
    history = [attempt(1, "ValueError", "boom"), attempt(2, "ValueError", "boom", outcome="failed")]
    record_attempts(job, history)

    requeued = failures.requeue(job.id)

    assert requeued.id == job.id
    assert queue.job_ids == [job.id]
    assert failures.count() == 0
    stored = Job.fetch(job.id, connection=queue.connection)
    assert stored.get_status() == JobStatus.QUEUED
    assert stored.meta[ATTEMPTS_META_KEY] == [a.to_dict() for a in history]
    assert stored.meta[BUDGET_START_META_KEY] == 2
    assert retries_used(stored.meta) == 0


def test_a_requeued_job_that_then_succeeds_leaves_the_failed_registry(queue, failures, connection):
    job = fail(queue, fails_until_fixed)
    connection.set("fixed", 1)

    failures.requeue(job.id)
    SimpleWorker([queue], connection=connection).work(burst=True)

    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "ok"
    assert failures.count() == 0
    assert failures.list() == []


def test_requeue_of_an_unknown_job_names_the_job_and_queue(queue, failures):
    waiting = queue.enqueue(explode, 1)  # queued, never failed

    for job_id in ("no-such-job", waiting.id):
        with pytest.raises(NoSuchFailedJob) as caught:
            failures.requeue(job_id)
        assert isinstance(caught.value, KeyError)
        assert str(caught.value) == f"Job {job_id}: not in the failed registry of queue 'default'"
    assert queue.job_ids == [waiting.id]


def test_requeue_all_takes_the_same_filters_and_counts(queue, failures):
    explosions = [fail(queue, explode, n) for n in range(3)]
    declined = fail(queue, decline, 9)

    assert failures.requeue_all(exc_type="ValueError") == 3

    assert sorted(queue.job_ids) == sorted(job.id for job in explosions)
    assert [entry.job_id for entry in failures.list()] == [declined.id]
    assert failures.requeue_all() == 1
    assert failures.count() == 0


def test_purge_older_than_keeps_newer_failures(queue, failures, connection):
    old = fail(queue, explode, 1)
    new = fail(queue, explode, 2)
    set_failed_at(old, utcnow() - timedelta(days=3))

    assert failures.purge(older_than=timedelta(days=1)) == 1

    assert [entry.job_id for entry in failures.list()] == [new.id]
    assert not Job.exists(old.id, connection)
    assert old.id not in FailedJobRegistry(queue.name, connection)


def test_purge_without_age_deletes_every_failed_job(queue, failures, connection):
    jobs = [fail(queue, explode, n) for n in range(2)]

    assert failures.purge() == 2

    assert failures.count() == 0
    assert not any(Job.exists(job.id, connection) for job in jobs)
    assert failures.purge() == 0


def test_jobs_whose_hash_expired_are_skipped_and_unrequeueable(queue, failures, connection):
    kept, expired = fail(queue, explode, 1), fail(queue, explode, 2)
    connection.delete(Job.key_for(expired.id))  # what the hash's TTL does

    assert [entry.job_id for entry in failures.list()] == [kept.id]
    assert failures.count() == 1  # list() dropped the stale entry, as django-rq's page does
    with pytest.raises(NoSuchFailedJob):
        failures.requeue(expired.id)


def test_stale_entry_requeued_by_id_raises_and_is_dropped(queue, failures, connection):
    job = fail(queue, explode, 1)
    connection.delete(Job.key_for(job.id))

    with pytest.raises(NoSuchFailedJob, match=job.id):
        failures.requeue(job.id)
    assert failures.count() == 0


def test_args_summary_is_short_and_never_raises(queue, failures, connection):
    # rq builds a job's description with repr() unless given one
    long_job = fail(queue, explode, "x" * 500, other=BadRepr(), description="explode(...)")
    broken_job = fail(queue, explode, 1)
    connection.hset(broken_job.key, "data", b"not a pickle")

    entries = {entry.job_id: entry for entry in failures.list()}

    long_args = entries[long_job.id].args
    assert long_args.startswith("'xxxx") and long_args.endswith(
        "…, other=<BadRepr: repr raised RuntimeError>"
    )
    assert len(long_args) <= 120
    assert entries[broken_job.id].func is None
    assert entries[broken_job.id].args.startswith("<undecodable job data")
    assert entries[broken_job.id].last_error == ErrorSummary("ValueError", "boom 1")
    assert failures.list(func=f"{HERE}.explode") == [entries[long_job.id]]


def test_a_killed_work_horse_is_listed_with_rqs_words_and_no_exception_type(queue, failures, connection):
    job = queue.enqueue(die)
    Worker([queue], connection=connection).work(burst=True)  # forks a work horse, which the job kills
    assert job.get_status() == JobStatus.FAILED

    [entry] = failures.list()

    assert entry.last_error is not None
    assert entry.last_error.exc_type is None
    assert entry.last_error.message.startswith("Work-horse terminated unexpectedly")
    assert failures.list(exc_type="ValueError") == []


def test_a_job_failed_by_an_older_rq_takes_its_error_from_the_job_hash(queue, failures, connection):
    job = fail(queue, decline, 5)
    error = next(r for r in job.results() if r.exc_string).exc_string
    # rq < 2 kept the traceback in the job hash and wrote no Result stream.
    connection.delete(Result.get_key(job.id))
    connection.hset(job.key, "exc_info", zlib.compress(error.encode()))

    [entry] = failures.list()

    assert entry.last_error == ErrorSummary(f"{HERE}.PaymentDeclinedError", "order 5: card declined")


def test_a_registry_by_name_needs_its_connection(connection):
    assert FailureRegistry("default", connection).count() == 0
    with pytest.raises(ValueError, match="'default'.*connection"):
        FailureRegistry("default")


def test_corrupt_records_never_break_the_listing(queue, failures, connection):
    no_data = fail(queue, explode, 1)
    connection.hdel(no_data.key, "data")  # not an rq job any more: skipped with a warning
    odd_result = fail(queue, explode, 2)
    connection.xadd(Result.get_key(odd_result.id), {"type": "99"})  # a result type rq does not know
    odd_history = fail(queue, explode, 3)
    good = attempt(1, "ValueError", "boom 3", outcome="failed")
    odd_history_meta = Job.fetch(odd_history.id, connection=connection)
    odd_history_meta.meta[ATTEMPTS_META_KEY] = [{"attempt": 1}, good.to_dict()]
    odd_history_meta.save_meta()

    entries = {entry.job_id: entry for entry in failures.list()}

    assert set(entries) == {odd_result.id, odd_history.id}
    assert entries[odd_result.id].last_error is None
    assert entries[odd_history.id].attempts == (good,)


def test_failed_at_falls_back_to_the_last_attempt_then_to_rqs_registry_score(queue, failures, connection):
    with_history, bare = fail(queue, explode, 1), fail(queue, explode, 2)
    record_attempts(with_history, [attempt(1, "ValueError", "boom 1", outcome="crashed")])
    expires_at = connection.zscore(FailedJobRegistry(queue.name, connection).key, bare.id)
    for job in (with_history, bare):
        connection.hdel(job.key, "ended_at")  # e.g. moved to the failed registry by crash recovery

    entries = {entry.job_id: entry for entry in failures.list()}

    assert entries[with_history.id].failed_at == datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    expected = datetime.fromtimestamp(expires_at - DEFAULT_FAILURE_TTL, timezone.utc)
    assert entries[bare.id].failed_at == expected


def test_requeue_keeps_meta_it_cannot_read(queue, failures, connection, caplog):
    job = fail(queue, explode, 1)
    connection.hset(job.key, "meta", b"written by another serializer")

    failures.requeue(job.id)

    assert queue.job_ids == [job.id]
    assert connection.hget(job.key, "meta") == b"written by another serializer"
    assert f"Job {job.id}: meta unreadable" in caplog.text


def test_a_failed_job_whose_meta_is_a_json_list_is_listed_not_a_crash(connection):
    # Given a failed job whose meta someone with write access to Redis set to a JSON list
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(jobs.succeed)
    queue.remove(job.id)
    queue.failed_job_registry.add(job, exc_string="Traceback...\nValueError: boom")
    connection.hset(job.key, "meta", b"[1,2,3]")
    # When the operator lists the failures (the registry by name, as by its Queue)
    by_name = FailureRegistry("default", connection=connection, serializer=JSONSerializer).list()
    by_queue = FailureRegistry(queue).list()
    # Then it is listed, without attempts
    assert [entry.job_id for entry in by_name] == [job.id] == [entry.job_id for entry in by_queue]
    assert by_name[0].attempts == ()
