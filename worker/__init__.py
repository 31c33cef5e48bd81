"""A retrying RQ worker: exponential backoff with jitter, precise retries, crash recovery.

Framework-agnostic: imports rq and redis, never Django.

The public names below load on first use (PEP 562 ``__getattr__``): ``from worker import RetryWorker``
imports rq's worker machinery, ``import worker.exceptions`` or ``from worker.retries.backoff import
Backoff`` (a Django settings module, a health probe) does not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and readers; at run time `__getattr__` loads them
    from worker.exceptions import (
        JobLoadError,
        NoSuchFailedJob,
        PermanentJobError,
        RetryPolicyError,
        WorkerCrashed,
        WorkerError,
    )
    from worker.gate.gate import JobGate, JobRefused, install_job_gate
    from worker.gate.limits import JobLimits, JobTooLarge, MetaNotAnObject, install_job_limits
    from worker.retries.attempts import ATTEMPTS_META_KEY, Attempt
    from worker.retries.backoff import POLICY_META_KEY, Backoff
    from worker.retries.failures import ErrorSummary, FailedJob, FailureRegistry
    from worker.serializers import JSONOrPickleSerializer, JSONRefused, JSONSerializer, PickleRefused
    from worker.workers import PreforkRetryWorker, RetryWorker, SimpleRetryWorker

#: Each name of `__all__` and the module that defines it.
_SOURCES: dict[str, str] = {
    "ATTEMPTS_META_KEY": "worker.retries.attempts",
    "Attempt": "worker.retries.attempts",
    "Backoff": "worker.retries.backoff",
    "ErrorSummary": "worker.retries.failures",
    "FailedJob": "worker.retries.failures",
    "FailureRegistry": "worker.retries.failures",
    "JSONOrPickleSerializer": "worker.serializers",
    "JSONRefused": "worker.serializers",
    "JSONSerializer": "worker.serializers",
    "JobGate": "worker.gate.gate",
    "JobLimits": "worker.gate.limits",
    "JobLoadError": "worker.exceptions",
    "JobRefused": "worker.gate.gate",
    "JobTooLarge": "worker.gate.limits",
    "MetaNotAnObject": "worker.gate.limits",
    "NoSuchFailedJob": "worker.exceptions",
    "POLICY_META_KEY": "worker.retries.backoff",
    "PermanentJobError": "worker.exceptions",
    "PickleRefused": "worker.serializers",
    "PreforkRetryWorker": "worker.workers",
    "RetryPolicyError": "worker.exceptions",
    "RetryWorker": "worker.workers",
    "SimpleRetryWorker": "worker.workers",
    "WorkerCrashed": "worker.exceptions",
    "WorkerError": "worker.exceptions",
    "install_job_gate": "worker.gate.gate",
    "install_job_limits": "worker.gate.limits",
}

__all__ = [
    "ATTEMPTS_META_KEY",
    "POLICY_META_KEY",
    "Attempt",
    "Backoff",
    "ErrorSummary",
    "FailedJob",
    "FailureRegistry",
    "JSONOrPickleSerializer",
    "JSONRefused",
    "JSONSerializer",
    "JobGate",
    "JobLimits",
    "JobLoadError",
    "JobRefused",
    "JobTooLarge",
    "MetaNotAnObject",
    "NoSuchFailedJob",
    "PermanentJobError",
    "PickleRefused",
    "PreforkRetryWorker",
    "RetryPolicyError",
    "RetryWorker",
    "SimpleRetryWorker",
    "WorkerCrashed",
    "WorkerError",
    "install_job_gate",
    "install_job_limits",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept in this module's namespace."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
