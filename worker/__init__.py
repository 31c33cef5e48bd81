"""A retrying RQ worker: exponential backoff with jitter, precise retries, crash recovery.

Framework-agnostic: imports rq and redis, never Django.
"""

from __future__ import annotations

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
