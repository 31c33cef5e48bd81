"""A worker's job gate: only allowed functions run, pickled envelopes are refused, the worker goes on.

Every worker class checks each job right after dequeueing it, before rq imports anything the job
names; a refused job fails at once into its queue's failed registry, with an error naming the job,
what was refused and the setting that allows it. Without a gate, the classes are rq's.
"""

from __future__ import annotations

import pickle
import sys
import zlib
from pathlib import Path

import pytest
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.serializers import DefaultSerializer

from tests.chaos.canary import SENTINEL_DIR_ENV, Boom, unregistered_canary
from tests.support.processes import REPO_ROOT, Proc
from tests.worker import jobs
from tests.worker.retry_support import FAST, attempts, runs
from worker import PreforkRetryWorker
from worker.gate.gate import JobGate, JobRefused, install_job_gate, installed_job_gate
from worker.retries.backoff import POLICY_META_KEY
from worker.serializers import JSONOrPickleSerializer, JSONSerializer
from worker.workers import RetryWorker, SimpleRetryWorker

all_workers = pytest.mark.parametrize("worker_class", [SimpleRetryWorker, RetryWorker, PreforkRetryWorker])

GATE = JobGate(
    ("tests.worker.jobs.*",), functions_setting="THE_FUNCTIONS", pickle_setting="THE_PICKLE = True"
)
CANARY = "tests.chaos.canary.unregistered_canary"


@pytest.fixture
def sentinels(tmp_path: Path, monkeypatch) -> Path:
    """Where the canary leaves a file if anything calls it (forked horses inherit the variable)."""
    folder = tmp_path / "sentinels"
    folder.mkdir()
    monkeypatch.setenv(SENTINEL_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def json_queue(connection) -> Queue:
    return Queue("default", connection=connection, serializer=JSONSerializer)


@pytest.fixture
def pickle_queue(connection) -> Queue:
    return Queue("default", connection=connection)  # rq's default serializer, as plain rq enqueues


def refusal_text(connection, job_id: str) -> str:
    return zlib.decompress(connection.hget(Job.key_for(job_id), "exc_info")).decode()


def assert_refused(connection, queue: Queue, job_id: str, *fragments: str) -> None:
    assert job_id in queue.failed_job_registry
    assert connection.hget(Job.key_for(job_id), "status") == b"failed"
    text = refusal_text(connection, job_id)
    assert f"JobRefused: Job {job_id}: refused: " in text
    for fragment in fragments:
        assert fragment in text, text
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []


def push_pickled_meta(json_queue: Queue) -> Job:
    """A JSON job of an allowed function whose meta unpickles into a call of the canary."""
    job = json_queue.enqueue(jobs.succeed)
    json_queue.connection.hset(job.key, "meta", pickle.dumps({POLICY_META_KEY: Boom()}))
    return job


@all_workers
def test_a_job_naming_a_function_outside_the_allow_list_fails_at_once_and_runs_nothing(
    connection, json_queue, sentinels, worker_class
):
    # Given a job naming a function the gate does not allow, then a good one
    hostile = json_queue.enqueue(CANARY, meta={POLICY_META_KEY: FAST.to_dict()})
    good = json_queue.enqueue(jobs.succeed)
    # When a worker behind the gate works the queue
    worker_class([json_queue], connection=connection, job_gate=GATE).work(burst=True)
    # Then the hostile job failed at once, naming itself, the function and the setting; nothing ran
    assert_refused(
        connection, json_queue, hostile.id, f"function '{CANARY}' is not allowed", "add it to THE_FUNCTIONS"
    )
    assert hostile.id not in json_queue.scheduled_job_registry  # never retried
    assert list(sentinels.iterdir()) == []
    # And the same worker went on with the good job
    assert good.get_status() == JobStatus.FINISHED
    assert runs(connection, good) == 1


@all_workers
def test_pickled_job_data_is_refused_without_unpickling(connection, pickle_queue, sentinels, worker_class):
    hostile = pickle_queue.enqueue(jobs.succeed, Boom())  # unpickling the arguments calls the canary
    good = pickle_queue.enqueue(jobs.succeed)  # pickled too: refused as well, harmless or not
    worker_class([pickle_queue], connection=connection, job_gate=GATE).work(burst=True)
    assert_refused(
        connection,
        pickle_queue,
        hostile.id,
        "its data (function name and arguments) is pickled",
        "THE_PICKLE",
    )
    assert_refused(connection, pickle_queue, good.id, "is pickled")
    assert list(sentinels.iterdir()) == []
    assert runs(connection, good) == 0


@all_workers
def test_pickled_job_meta_is_refused_without_unpickling(connection, json_queue, sentinels, worker_class):
    hostile = push_pickled_meta(json_queue)
    good = json_queue.enqueue(jobs.succeed)
    worker_class([json_queue], connection=connection, job_gate=GATE).work(burst=True)
    assert_refused(connection, json_queue, hostile.id, "its meta is pickled", "set THE_PICKLE = True")
    assert list(sentinels.iterdir()) == []
    assert runs(connection, hostile) == 0
    assert good.get_status() == JobStatus.FINISHED


def test_a_callback_outside_the_allow_list_is_refused_too(connection, json_queue, sentinels):
    hostile = json_queue.enqueue(jobs.succeed, on_success=Callback(unregistered_canary))
    SimpleRetryWorker([json_queue], connection=connection, job_gate=GATE).work(burst=True)
    assert_refused(connection, json_queue, hostile.id, f"success callback '{CANARY}' is not allowed")
    assert runs(connection, hostile) == 0
    assert list(sentinels.iterdir()) == []


@all_workers
def test_undecodable_data_does_not_hide_a_refused_callback(connection, json_queue, sentinels, worker_class):
    # Given a job whose data cannot be decoded, with a failure callback outside the allow list
    hostile = json_queue.enqueue(jobs.succeed, on_failure=Callback(unregistered_canary))
    connection.hset(hostile.key, "data", zlib.compress(b"{not json"))
    good = json_queue.enqueue(jobs.succeed)
    # When a gated worker works the queue
    worker_class([json_queue], connection=connection, job_gate=GATE).work(burst=True)
    # Then the job is refused for its callback (not a traceback of its data), and nothing ran
    assert_refused(connection, json_queue, hostile.id, f"failure callback '{CANARY}' is not allowed")
    assert list(sentinels.iterdir()) == []
    assert good.get_status() == JobStatus.FINISHED


def test_a_gate_that_accepts_pickle_runs_pickled_jobs_of_allowed_functions(connection, pickle_queue):
    gate = JobGate(("tests.worker.jobs.succeed", "tests.worker.jobs.fail_times"), accept_pickle=True)
    job = pickle_queue.enqueue(jobs.succeed, meta={POLICY_META_KEY: FAST.to_dict()})
    flaky = pickle_queue.enqueue(jobs.fail_times, 1, meta={POLICY_META_KEY: FAST.to_dict()})
    worker = SimpleRetryWorker([pickle_queue], connection=connection, job_gate=gate)
    assert worker.serializer is JSONOrPickleSerializer
    worker.work(burst=True)
    assert job.get_status() == JobStatus.FINISHED
    assert runs(connection, job) == 1
    # the attempt it records on failure is written as JSON, which the pickled job's readers also read
    (record,) = attempts(Job.fetch(flaky.id, connection=connection, serializer=JSONOrPickleSerializer))
    assert record["outcome"] == "retrying"


def test_allowed_functions_are_exact_paths_prefixes_or_anything():
    gate = JobGate(("shop.jobs.*", "reports.build"))
    assert gate.allows("shop.jobs.send") and gate.allows("shop.jobs.sub.deep")
    assert gate.allows("reports.build")
    assert not gate.allows("shop.jobsx.send") and not gate.allows("reports.build_all")
    assert not gate.allows("os.system")
    assert JobGate(("*",)).allows("os.system")
    assert JobGate(("*",), accept_pickle=True).is_open and not JobGate(("*",)).is_open


@pytest.mark.parametrize("entries", [("os.system()",), ("",), ("shop.*.x",), "shop.jobs.*", (3,)])
def test_a_gate_refuses_entries_that_are_not_dotted_paths(entries):
    with pytest.raises(ValueError, match="allowed_functions must be dotted paths"):
        JobGate(entries)


def test_a_gate_sets_the_serializer_of_the_worker_and_its_queues_whatever_it_was_given(connection):
    # django-rq's rqworker passes --serializer rq.serializers.DefaultSerializer explicitly
    queue = Queue("default", connection=connection)
    worker = SimpleRetryWorker([queue], connection=connection, serializer=DefaultSerializer, job_gate=GATE)
    assert worker.serializer is JSONSerializer
    assert queue.serializer is JSONSerializer
    assert SimpleRetryWorker([queue], connection=connection, serializer=DefaultSerializer).job_gate is None


def test_an_installed_gate_is_every_workers_default_and_a_callable_is_asked_per_worker(connection):
    queue = Queue("default", connection=connection)
    asked = []

    def gate() -> JobGate:
        asked.append(True)
        return GATE

    previous = install_job_gate(gate)
    try:
        assert installed_job_gate() is GATE
        worker = SimpleRetryWorker([queue], connection=connection)
        assert worker.job_gate is GATE and worker.serializer is JSONSerializer
        own = JobGate(("*",), accept_pickle=True)
        assert SimpleRetryWorker([queue], connection=connection, job_gate=own).job_gate is own
    finally:
        install_job_gate(previous)
    assert len(asked) == 2


def test_refusals_are_permanent_load_errors():
    from worker.exceptions import JobLoadError, PermanentJobError

    assert issubclass(JobRefused, JobLoadError) and issubclass(JobRefused, PermanentJobError)
    assert str(JobRefused("abc", "because")) == "Job abc: refused: because"


# -- without a gate, rq's behaviour --------------------------------------------------------------


@all_workers
def test_without_a_gate_a_worker_runs_pickled_jobs_of_any_function_as_rq(
    connection, pickle_queue, worker_class
):
    job = pickle_queue.enqueue(jobs.succeed, meta={"pickled": {1, 2}})  # a set: only pickle holds it
    worker = worker_class([pickle_queue], connection=connection)
    assert worker.job_gate is None and worker.serializer is DefaultSerializer
    worker.work(burst=True)
    assert job.get_status() == JobStatus.FINISHED
    assert runs(connection, job) == 1


def test_rq_worker_cli_with_our_class_and_no_gate_runs_a_pickled_plain_rq_job(
    connection, pickle_queue, redis_url, tmp_path
):
    # Given a plain rq job (pickled) of an arbitrary function
    job = pickle_queue.enqueue(jobs.succeed, meta={"pickled": {1, 2}})
    # When `rq worker -w worker.SimpleRetryWorker` (no Django, no gate) works the queue
    args = [
        str(Path(sys.executable).with_name("rq")),
        "worker",
        "--burst",
        "-w",
        "worker.SimpleRetryWorker",
        "-u",
        redis_url,
        "default",
    ]
    proc = Proc(args, env={"DJANGO_SETTINGS_MODULE": ""}, log_path=tmp_path / "rq-worker.log", cwd=REPO_ROOT)
    code = proc.wait(60)
    # Then it ran, as under plain rq
    assert code == 0, proc.log_path.read_text()[-3000:]
    assert job.get_status() == JobStatus.FINISHED
    assert runs(connection, job) == 1


# -- nothing else a job names is imported either --------------------------------------------------


def test_rqs_cleanup_of_a_forged_abandoned_job_does_not_call_its_failure_callback(
    connection, json_queue, sentinels
):
    # Given a forged job hash that looks abandoned (STARTED, expired in the started registry) and
    # names the canary as its failure callback, which rq's cleanup calls for abandoned jobs
    job = json_queue.enqueue(jobs.succeed, on_failure=Callback(unregistered_canary))
    json_queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    connection.zadd(json_queue.started_job_registry.key, {f"{job.id}:forged-execution": 1})
    # When a worker behind the gate runs rq's registry maintenance
    worker = SimpleRetryWorker([json_queue], connection=connection, job_gate=GATE)
    worker.clean_registries()
    # Then the callback was not imported, let alone called; the job is still failed, as rq fails it
    assert list(sentinels.iterdir()) == []
    assert job.id in json_queue.failed_job_registry


def test_a_gated_workers_job_class_imports_only_what_the_gate_allows(connection, json_queue, sentinels):
    worker = SimpleRetryWorker([json_queue], connection=connection, job_gate=GATE)
    assert worker.job_class is json_queue.job_class and issubclass(worker.job_class, Job)
    job = json_queue.enqueue(CANARY)
    fetched = worker.job_class.fetch(job.id, connection=connection, serializer=worker.serializer)
    with pytest.raises(JobRefused, match=f"function '{CANARY}' is not allowed"):
        fetched.func  # noqa: B018 - importing is the check
    allowed = worker.job_class.fetch(
        json_queue.enqueue(jobs.succeed).id, connection=connection, serializer=worker.serializer
    )
    assert allowed.func is jobs.succeed
    assert list(sentinels.iterdir()) == []
