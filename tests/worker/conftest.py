"""tests/worker test the worker package as rq users run it: without the Django app's job gate.

pytest-django sets Django up for the whole session, so rq_signals' ``AppConfig.ready()`` has installed
its gate (`worker.gate.gate.install_job_gate`) in this process; workers built here must not inherit it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.gate.gate import install_job_gate


@pytest.fixture(autouse=True)
def no_installed_job_gate() -> Iterator[None]:
    previous = install_job_gate(None)
    yield
    install_job_gate(previous)
