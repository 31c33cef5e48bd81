"""The production worker classes with the short lease of the tests, so a crash is found in seconds.

A 5 s lease renewed every second, a recovery scan every half second (as `tests.worker.crash_jobs`):
a killed worker's job is claimed about five seconds after the kill, not fifteen.
"""

from __future__ import annotations

from worker import PreforkRetryWorker
from worker.workers import RetryWorker, SimpleRetryWorker

LEASE_SECONDS = 5.0
SCAN_SECONDS = 0.5


class ChaosRetryWorker(RetryWorker):
    lease_ttl = LEASE_SECONDS
    recovery_interval = SCAN_SECONDS


class ChaosSimpleRetryWorker(SimpleRetryWorker):
    lease_ttl = LEASE_SECONDS
    recovery_interval = SCAN_SECONDS


class ChaosPreforkRetryWorker(PreforkRetryWorker):
    lease_ttl = LEASE_SECONDS
    recovery_interval = SCAN_SECONDS


#: Short name to dotted path, as `manage.py rqworker --worker-class` takes it.
CLASSES = {
    "fork": f"{__name__}.ChaosRetryWorker",
    "simple": f"{__name__}.ChaosSimpleRetryWorker",
    "prefork": f"{__name__}.ChaosPreforkRetryWorker",
}
