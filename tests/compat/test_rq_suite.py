"""The compat runner's safety and bookkeeping (scripts/compat): what `make compat` relies on.

rq's tests flush whatever Redis they reach at localhost:6379, so the shim that sends them to a private
server is tested here against a real one; so is the class swap, which must fail loudly, never quietly
leave rq's classes in place. The rest (shards, unpacking, reading results) is plain data.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import redis

from scripts.compat.results import Outcome, Run, first_lines, regressions, to_pytest_id
from scripts.compat.runs import child_env, ended_without_report, shards
from scripts.compat.sources import unpack_tests
from tests.support.redis_server import RedisServer


def run_in_shim(
    code: str, *, port: int, swap: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = child_env(swap or {}, None)
    env["RQ_COMPAT_REDIS_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_default_redis_address_reaches_the_private_server(redis_server: RedisServer, redis_url: str):
    # Given a process started the way the runner starts rq's tests
    code = (
        "import redis\n"
        "for client in (redis.Redis(), redis.Redis(host='127.0.0.1', port=6379, db=5),"
        " redis.Redis.from_url('redis://localhost:6379/7')):\n"
        "    client.set('compat-probe', 'here')\n"
        "    print(client.connection_pool.get_connection().port)\n"
    )
    # When it talks to rq's hard-coded address, three ways
    done = run_in_shim(code, port=redis_server.port)
    # Then every command went to our server
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(redis_server.port)] * 3
    for db in (0, 5, 7):
        with redis.Redis(port=redis_server.port, db=db) as private:
            assert private.get("compat-probe") == b"here"


def test_a_connection_pointed_back_at_6379_is_refused_not_made(redis_server: RedisServer):
    code = (
        "import redis\n"
        "from redis.connection import Connection\n"
        "conn = Connection(port=1234)\n"
        "conn.port = 6379\n"
        "try:\n"
        "    conn.connect()\n"
        "except redis.ConnectionError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = run_in_shim(code, port=redis_server.port)
    assert "refusing to connect to localhost:6379" in done.stdout, done.stdout + done.stderr


def test_our_class_replaces_rqs_where_rqs_tests_import_it(redis_server: RedisServer):
    code = (
        "import rq, rq.worker, worker\n"
        "print(rq.Worker is worker.RetryWorker, rq.worker.Worker is worker.RetryWorker,"
        " rq.SimpleWorker is rq.worker.worker_classes.SimpleWorker)\n"
    )
    done = run_in_shim(code, port=redis_server.port, swap={"Worker": "worker.RetryWorker"})
    assert done.stdout.split() == ["True", "True", "True"], done.stderr


def test_a_class_that_does_not_import_stops_the_process_instead_of_running_rqs(redis_server: RedisServer):
    done = run_in_shim("print('ran')", port=redis_server.port, swap={"Worker": "worker.NoSuchWorker"})
    assert done.returncode == 3
    assert "ran" not in done.stdout
    assert "sitecustomize failed" in done.stderr


def test_shards_run_each_module_once_and_split_classes_once():
    modules = ["test_worker", "test_retry", "test_cli", "test_timeouts"]
    parts = shards(modules, 3)
    targets = [target for shard in parts for target in shard.targets]
    assert sorted(targets) == sorted(
        [
            "tests/test_worker.py",
            "tests/test_worker.py::TestWorker",
            "tests/test_retry.py",
            "tests/test_cli.py",
            "tests/test_timeouts.py",
        ]
    )
    (whole,) = [shard for shard in parts if "tests/test_worker.py" in shard.targets]
    assert whole.deselect == ("tests/test_worker.py::TestWorker",)
    # In one shard the split class is back inside its module, deselected nowhere.
    (single,) = shards(modules, 1)
    assert "tests/test_worker.py::TestWorker" not in single.targets
    assert single.deselect == ()


def test_only_rqs_tests_are_unpacked_and_their_tmp_paths_made_private(tmp_path: Path):
    sdist = tmp_path / "rq-9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, text in {
            "rq-9.9/rq/__init__.py": "VERSION = '9.9'\n",
            "rq-9.9/tests/__init__.py": "",
            "rq-9.9/tests/test_x.py": "SENTINEL = '/tmp/.rq_sentinel'\nOTHER = \"/tmpfile\"\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    into = tmp_path / "run"
    unpack_tests(sdist, into)
    assert not (into / "rq").exists()
    assert (into / "tests" / "test_x.py").read_text() == (
        f"SENTINEL = '{into}/tmp/.rq_sentinel'\nOTHER = \"/tmpfile\"\n"
    )
    assert (into / "tmp").is_dir()
    assert "markers" in (into / "pytest.ini").read_text()


def test_a_regression_is_a_pass_with_rqs_class_and_a_fail_or_absence_with_ours():
    baseline = Run(
        "baseline",
        results={
            "tests.test_a.T::test_same": Outcome("pass"),
            "tests.test_a.T::test_broken": Outcome("pass"),
            "tests.test_a.T::test_vanished": Outcome("pass"),
            "tests.test_a.T::test_already_failing": Outcome("fail"),
        },
    )
    ours = Run(
        "RetryWorker",
        results={
            "tests.test_a.T::test_same": Outcome("pass"),
            "tests.test_a.T::test_broken": Outcome("fail", "AssertionError: 1 != 2"),
            "tests.test_a.T::test_already_failing": Outcome("fail"),
        },
    )
    assert regressions(baseline, ours) == ["tests.test_a.T::test_broken", "tests.test_a.T::test_vanished"]
    assert to_pytest_id("tests.test_a.T::test_broken") == "tests/test_a.py::T::test_broken"


@pytest.mark.parametrize(
    ("report", "shown"),
    [
        (
            "AssertionError: 1 != 2\nself = <T>\n    def test(self):\n>       assert 1 == 2\n"
            "E       AssertionError: 1 != 2\n\ntests/test_a.py:12: AssertionError",
            ["AssertionError: 1 != 2", "tests/test_a.py:12: AssertionError"],
        ),
        ("", ["(no message)"]),
    ],
)
def test_a_failure_shows_its_message_and_where_it_failed(report: str, shown: list[str]):
    assert [line.strip() for line in first_lines(report).splitlines()] == shown


def test_a_shard_that_dies_names_the_signal_and_the_test_it_was_in(tmp_path: Path):
    log = tmp_path / "pytest.log"
    log.write_text(
        "tests/test_worker.py::T::test_done PASSED [ 50%]\ntests/test_worker.py::T::test_killed_us "
    )
    assert ended_without_report(-34, log) == (
        "pytest ended without a report (killed by signal 34, during "
        f"tests/test_worker.py::T::test_killed_us); see {log}"
    )
