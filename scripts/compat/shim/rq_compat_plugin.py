"""pytest plugin for compat runs of rq's test suite (`-p rq_compat_plugin`).

Refuses to run unless sitecustomize redirected Redis to a private server, checks that the
requested classes really sit where rq's tests import them from, names them in the header, and
deselects the tests listed in the runner's deselect file, the same ones in every run.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest


def swapped_classes() -> dict[str, str]:
    spec = os.environ.get("RQ_COMPAT_SWAP", "")
    return dict(pair.split("=", 1) for pair in spec.split(",") if pair)


def pytest_configure(config: pytest.Config) -> None:
    from redis import connection

    if not getattr(connection.Connection.__init__, "_rq_compat", False):
        raise pytest.UsageError(
            "rq compat: Redis is not redirected to a private server (RQ_COMPAT_REDIS_PORT unset or "
            "sitecustomize not on PYTHONPATH); refusing to run rq's tests, which flush localhost:6379."
        )
    import rq
    import rq.worker

    for name, dotted in swapped_classes().items():
        module_name, _, attr = dotted.rpartition(".")
        expected = getattr(importlib.import_module(module_name), attr)
        for module in (rq, rq.worker):
            if getattr(module, name) is not expected:
                raise pytest.UsageError(f"rq compat: {module.__name__}.{name} is not {dotted}")


def pytest_report_header(config: pytest.Config) -> str:
    swapped = swapped_classes()
    classes = ", ".join(f"{name} -> {dotted}" for name, dotted in swapped.items()) or "rq's own (baseline)"
    return f"rq compat: Redis on 127.0.0.1:{os.environ['RQ_COMPAT_REDIS_PORT']}; worker classes: {classes}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get("RQ_COMPAT_DESELECT")
    if not path:
        return
    listed = {line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()} - {""}
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if _matches(item.nodeid, listed) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _matches(nodeid: str, listed: set[str]) -> bool:
    """Whether `nodeid` ("tests/test_worker.py::TestWorker::test_x") is, or is inside, a listed id."""
    return any(nodeid == entry or nodeid.startswith(entry + "::") for entry in listed)
