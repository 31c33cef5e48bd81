"""One seam for rq's internals (`worker.rq_compat`), and worker classes a reader can follow.

Read from the source with `ast`: rq's private names (every underscored name rq's own source
defines) appear in `worker/` and `rq_signals/` only inside `worker/rq_compat/`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import rq
from rq import Queue
from rq.job import Job, JobStatus

from tests.support.layout import import_graph
from tests.support.processes import REPO_ROOT
from tests.worker import jobs
from tests.worker.retry_support import attempts, enqueue, run_until_settled
from worker import PreforkRetryWorker, RetryWorker, SimpleRetryWorker
from worker.bookkeeping import Bookkeeping
from worker.rq_compat import RqIncompatible, check, missing_names

SEAM = REPO_ROOT / "worker" / "rq_compat"
#: Our own names (or Django's) that happen to be spelt like one of rq's private names.
NOT_RQS = {
    "_instance": "rq_signals' own methods (payload, instances)",
    "_queue_names": "rq_signals.failures' own helper",
    "_result": "worker.retries.failures' own helper",
    "_state": "Django's Model._state (instances, enqueue)",
    "_timeout": "rq_signals.jobwriter's own helper",
    "_workers": "rq_signals.health's own helper",
}


def _underscored_names_defined(files: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _uses_outside_the_seam(names: set[str]) -> dict[str, list[str]]:
    uses: dict[str, list[str]] = {}
    for package in ("worker", "rq_signals"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if SEAM in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "name", None)
                if isinstance(node, ast.Attribute | ast.FunctionDef) and name in names:
                    uses.setdefault(name, []).append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    return uses


def test_rqs_private_names_appear_only_in_the_seam():
    rq_private = _underscored_names_defined(sorted(Path(rq.__file__).parent.rglob("*.py")))
    assert {"_stopped_job_id", "_handle_failure", "_enqueue_job"} <= rq_private  # the scan sees rq's names

    uses = _uses_outside_the_seam(rq_private)

    assert {name: where for name, where in uses.items() if name not in NOT_RQS} == {}


def test_the_seam_names_what_the_installed_rq_lacks_and_its_version(monkeypatch):
    assert missing_names() == []
    monkeypatch.delattr(Job, "_handle_failure")

    with pytest.raises(
        RqIncompatible, match=rf"rq {rq.__version__}: Job._handle_failure missing; .* supports rq 3.0"
    ):
        check()


@pytest.mark.parametrize("worker_class", [RetryWorker, SimpleRetryWorker, PreforkRetryWorker])
def test_each_worker_class_is_a_thin_variant_of_one_core(worker_class):
    ours = [klass for klass in worker_class.__mro__ if klass.__module__.startswith("worker.")]
    assert [klass.__name__ for klass in ours] == [worker_class.__name__, "WorkerCore"]
    assert len(worker_class.__mro__) <= 5


def test_the_worker_core_does_not_depend_on_the_round_trip_shortcuts():
    graph = import_graph(REPO_ROOT, "worker")
    reachable, todo = set(), ["worker.core"]
    while todo:
        module = todo.pop()
        if module not in reachable:
            reachable.add(module)
            todo.extend(graph.get(module, ()))
    assert not {module for module in reachable if module.startswith("worker.shortcuts")}


@pytest.mark.parametrize("base", [RetryWorker, SimpleRetryWorker, PreforkRetryWorker])
def test_a_worker_without_the_shortcuts_retries_and_fails_jobs_as_with_them(connection, base):
    # Given a worker class of each kind with rq's own bookkeeping in place of the round-trip shortcuts
    plain = type(f"Plain{base.__name__}", (base,), {"bookkeeping_class": Bookkeeping})
    queue = Queue("plain", connection=connection)
    ok = enqueue(queue, jobs.succeed)
    flaky = enqueue(queue, jobs.fail_times, 1)
    failing = enqueue(queue, jobs.always_fail)

    # When it works the queue until each job has ended, promoting retries when due
    statuses = [run_until_settled([queue], job, worker_class=plain) for job in (ok, flaky, failing)]

    # Then they end as with the shortcuts: success, success on the retry, failure after three retries
    assert statuses == [JobStatus.FINISHED, JobStatus.FINISHED, JobStatus.FAILED]
    assert [record["outcome"] for record in attempts(flaky)] == ["retrying", "succeeded"]
    assert [record["outcome"] for record in attempts(failing)] == ["retrying"] * 3 + ["failed"]
