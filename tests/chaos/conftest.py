"""The chaos suite: real workers, a private redis-server per scenario, faults injected by pid.

``pytest tests/chaos`` (and ``make test``) runs each scenario at its quick size; ``make chaos``
(``pytest -m chaos --chaos-full tests/chaos``) at full size. A table of what each scenario sent, ran,
lost, ran twice at once and failed as expected is printed at the end of the session.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from django.db import connection as db_connection
from django.test import override_settings

from rq_signals import queues, registration
from tests.chaos.harness import QUEUE_NAMES, Outcome, WorkerPool, format_table
from tests.support.redis_server import RedisServer

RESULTS = pytest.StashKey[list[Outcome]]()
#: Seconds a full-size scenario may take (pytest-timeout); quick ones keep setup.cfg's 120 s.
FULL_TIMEOUT_SECONDS = 900


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        default=False,
        help="run the chaos scenarios at full size (make chaos); quick sizes otherwise",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("chaos_full", default=False):
        return
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.timeout(FULL_TIMEOUT_SECONDS))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, [])
    if results:
        size = "full" if config.getoption("chaos_full", default=False) else "quick"
        terminalreporter.write_sep("=", f"chaos summary ({size} size)")
        for line in format_table(results):
            terminalreporter.write_line(line)


@pytest.fixture
def full_size(request: pytest.FixtureRequest) -> bool:
    """True under ``--chaos-full``: scenarios run at the sizes of issue "Nothing lost"."""
    return bool(request.config.getoption("chaos_full", default=False))


@pytest.fixture
def report(request: pytest.FixtureRequest):
    """Add a scenario's row to the summary table (printed at the end of the session)."""

    def add(outcome: Outcome) -> None:
        request.config.stash.setdefault(RESULTS, []).append(outcome)

    return add


@pytest.fixture
def chaos_receivers() -> Iterator[ModuleType]:
    """`tests.chaos.receivers`, registered in this process for one test only.

    Its ``post_save`` receiver on Invoice must not send jobs in the other tests of the session.
    """
    before = dict(registration._registry)
    sys.modules.pop("tests.chaos.receivers", None)
    module = importlib.import_module("tests.chaos.receivers")
    try:
        yield module
    finally:
        for receiver_id, declared in list(registration._registry.items()):
            if receiver_id not in before:
                for ref in declared.signals:
                    ref.signal.disconnect(sender=declared.sender, dispatch_uid=declared.dispatch_uid)
        registration._registry.clear()
        registration._registry.update(before)
        sys.modules.pop("tests.chaos.receivers", None)


def _private_redis(persistent: bool) -> Iterator[RedisServer]:
    server = RedisServer(persistent=persistent).start()
    rq_queues = {name: {"URL": server.url, "DEFAULT_TIMEOUT": 60} for name in QUEUE_NAMES}
    try:
        with override_settings(RQ_QUEUES=rq_queues):  # queues.reset() runs on setting_changed
            yield server
    finally:
        queues.reset()
        server.cleanup()


@pytest.fixture
def chaos_redis() -> Iterator[RedisServer]:
    """A redis-server of this scenario alone (AOF off), our queues pointed at it; stopped by its pid."""
    yield from _private_redis(persistent=False)


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    """As `chaos_redis`, with AOF (fsync always): a scenario may stop, kill and restart it."""
    yield from _private_redis(persistent=True)


@pytest.fixture
def sentinel_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "sentinels"
    folder.mkdir()
    return folder


@pytest.fixture
def worker_pool(tmp_path: Path, sentinel_dir: Path) -> Iterator[WorkerPool]:
    """Start chaos workers against the scenario's Redis (`pool.start(server, kind)`); all stopped by pid."""
    pool = WorkerPool(tmp_path, sentinel_dir=sentinel_dir, db_name=str(db_connection.settings_dict["NAME"]))
    try:
        yield pool
    finally:
        pool.stop_all()
