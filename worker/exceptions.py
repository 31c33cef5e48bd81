"""Errors raised by the worker package; one base, `WorkerError`."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error the worker package raises."""


class PermanentJobError(WorkerError):
    """A job failure that no retry can mend; the job goes straight to the failed registry.

    Raise it (or a subclass) from a job to give up at once, whatever its policy says.
    """


class JobLoadError(PermanentJobError):
    """A job's function could not be imported or its payload could not be decoded."""

    def __init__(self, job_id: str, what: str, cause: BaseException | None = None) -> None:
        reason = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"Job {job_id}: cannot load {what}{reason}")
        self.job_id = job_id
        self.what = what


class RetryPolicyError(PermanentJobError):
    """A job's `retry_policy` in its meta is invalid: the job fails at its first failure, no retries."""

    def __init__(self, job_id: str, problem: str) -> None:
        super().__init__(f"Job {job_id}: invalid retry_policy in its meta, so no retries: {problem}")
        self.job_id = job_id


class WorkerCrashed(WorkerError):
    """Recorded as an attempt's error when the process running the job died mid-job."""


class NoSuchFailedJob(WorkerError, KeyError):
    """`FailureRegistry` was given a job id that is not in the failed registry."""

    def __init__(self, job_id: str, queue_name: str) -> None:
        super().__init__(f"Job {job_id}: not in the failed registry of queue {queue_name!r}")
        self.job_id = job_id
        self.queue_name = queue_name

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
