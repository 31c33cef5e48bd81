"""The job envelope serializers: JSON that never unpickles, and JSON-or-pickle for gates that accept it."""

from __future__ import annotations

import json
import pickle
import zlib

import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer as RqJSONSerializer
from rq.serializers import resolve_serializer

from tests.chaos.canary import SENTINEL_DIR_ENV, Boom
from worker.gate.gate import JobGate
from worker.serializers import (
    JSONOrPickleSerializer,
    JSONRefused,
    JSONSerializer,
    PickleRefused,
    is_pickle,
    json_depth,
)
from worker.workers import SimpleRetryWorker

VALUES = [{"retry_policy": {"max_retries": 5, "base": 1.0}}, ["a", 1, None, True, 2.5], "text", {}]


@pytest.mark.parametrize("value", VALUES)
def test_json_writes_what_rqs_json_serializer_writes_and_reads_it_back(value):
    assert JSONSerializer.dumps(value) == RqJSONSerializer.dumps(value)
    assert JSONSerializer.loads(RqJSONSerializer.dumps(value)) == value


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_json_refuses_pickle_saying_so_and_never_unpickles(protocol, tmp_path, monkeypatch):
    # Given pickled bytes whose unpickling would call the canary
    monkeypatch.setenv(SENTINEL_DIR_ENV, str(tmp_path))
    data = pickle.dumps({"retry_policy": Boom()}, protocol=protocol)
    assert is_pickle(data)
    # When the JSON serializer loads them, then it refuses, says why and how to allow it, runs nothing
    with pytest.raises(PickleRefused, match=r"pickled .* pickle is refused.*accept_pickle=True"):
        JSONSerializer.loads(data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", VALUES)
def test_no_json_text_looks_like_pickle(value):
    assert not is_pickle(JSONSerializer.dumps(value))
    assert not is_pickle(b"")


def test_json_or_pickle_writes_json_when_it_can_and_pickle_otherwise():
    assert JSONOrPickleSerializer.dumps({"a": [1]}) == b'{"a": [1]}'
    packed = JSONOrPickleSerializer.dumps({"a": {1, 2}})  # a set is not JSON
    assert is_pickle(packed)
    assert JSONOrPickleSerializer.loads(packed) == {"a": {1, 2}}
    assert JSONOrPickleSerializer.loads(b'{"a": [1]}') == {"a": [1]}
    assert JSONOrPickleSerializer.loads(pickle.dumps(("t", 1))) == ("t", 1)


def test_rq_unpacks_a_json_job_envelope_and_runs_the_same_call(connection):
    # Given a job written by rq with the JSON serializer (its data tuple becomes a JSON list)
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("tests.worker.jobs.succeed", meta={"retry_policy": {"max_retries": 1}})
    stored = connection.hgetall(job.key)
    assert json.loads(zlib.decompress(stored[b"data"])) == ["tests.worker.jobs.succeed", None, [], {}]
    assert json.loads(stored[b"meta"]) == {"retry_policy": {"max_retries": 1}}
    # When rq reads it back with either serializer, then it is the same call and meta
    for serializer in (JSONSerializer, JSONOrPickleSerializer):
        fetched = Job.fetch(job.id, connection=connection, serializer=serializer)
        assert (fetched.func_name, fetched.instance, tuple(fetched.args), fetched.kwargs) == (
            "tests.worker.jobs.succeed",
            None,
            (),
            {},
        )
        assert fetched.meta == {"retry_policy": {"max_retries": 1}}


def test_the_serializers_are_rq_serializers_by_dotted_path():
    assert resolve_serializer("worker.serializers.JSONSerializer") is JSONSerializer
    assert resolve_serializer("worker.serializers.JSONOrPickleSerializer") is JSONOrPickleSerializer


@pytest.mark.parametrize("serializer", [JSONSerializer, JSONOrPickleSerializer])
def test_json_nested_past_the_limit_is_refused_before_decoding(serializer):
    # Given JSON nested 900 deep, which would make a decoder walking it recurse past Python's limit
    deep = b"[" * 900 + b"]" * 900
    # Then it is refused, saying why, and brackets inside strings do not count
    with pytest.raises(JSONRefused, match="nests deeper than the limit of 100"):
        serializer.loads(deep)
    assert serializer.loads(json.dumps(["[" * 900, {"a": [[1]]}]).encode()) == ["[" * 900, {"a": [[1]]}]
    assert json_depth(b'[[{"a": "]]]]"}]]') == 3


def test_json_longer_than_the_limit_is_refused_before_decoding():
    class Small(JSONSerializer):
        max_json_bytes = 100

    with pytest.raises(JSONRefused, match="is 102 bytes long, more than the limit of 100"):
        Small.loads(json.dumps("x" * 100).encode())


def test_a_job_whose_data_nests_900_deep_fails_at_once_as_a_load_error(connection):
    # Given a JSON job whose arguments nest 900 deep
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    nested: list[object] = []
    for _ in range(899):
        nested = [nested]
    job = queue.enqueue("tests.worker.jobs.succeed")
    connection.hset(
        job.key, "data", zlib.compress(json.dumps(["tests.worker.jobs.succeed", None, [nested], {}]).encode())
    )
    # When a JSON worker works it, then it failed once, permanently, naming the limit (never retried)
    SimpleRetryWorker([queue], connection=connection, job_gate=JobGate(("tests.worker.jobs.*",))).work(
        burst=True
    )
    assert job.id in queue.failed_job_registry
    text = Job.fetch(job.id, connection=connection, serializer=JSONSerializer).latest_result().exc_string
    assert f"JobLoadError: Job {job.id}: cannot load its data" in text
    assert "nests deeper than the limit of 100" in text
    assert job.id not in queue.scheduled_job_registry
