"""Worker classes behind a job gate, for `rq worker -w ...` subprocesses: the gate comes from the
environment (`ALLOWED_WEBHOOK_URLS_ENV`, a JSON list), its functions are `tests.worker.jobs.*`."""

from __future__ import annotations

import json
import os
from typing import Any

from worker import PreforkRetryWorker
from worker.gate.gate import JobGate
from worker.workers import RetryWorker, SimpleRetryWorker

ALLOWED_WEBHOOK_URLS_ENV = "TEST_ALLOWED_WEBHOOK_URLS"


def gate() -> JobGate:
    urls = json.loads(os.environ[ALLOWED_WEBHOOK_URLS_ENV])
    return JobGate(("tests.worker.jobs.*",), allowed_webhook_urls=tuple(urls))


class GatedRetryWorker(RetryWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, job_gate=gate(), **kwargs)


class GatedSimpleRetryWorker(SimpleRetryWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, job_gate=gate(), **kwargs)


class GatedPreforkRetryWorker(PreforkRetryWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, job_gate=gate(), **kwargs)
