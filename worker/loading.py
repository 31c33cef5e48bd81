"""Telling "the job could not be loaded" apart from "the job's function raised".

rq resolves a job's function and decodes its arguments lazily, inside the attempt, so an
unimportable function or undecodable data shows up as an ordinary exception of the attempt. No
retry can mend either; `load_error` recognises them so the worker fails the job at once.
"""

from __future__ import annotations

from rq.exceptions import DeserializationError
from rq.job import Job

from worker.exceptions import JobLoadError


def load_error(job: Job, exc: BaseException | None) -> JobLoadError | None:
    """The `JobLoadError` explaining `exc` if `job` cannot be loaded here, else None.

    Called after an attempt failed: it decodes the job's data and imports its function again
    (both cached by then when they work), so an `ImportError` raised *inside* the function is not
    mistaken for an unimportable function.
    """
    if isinstance(exc, JobLoadError):
        return exc
    if exc is None:
        return None
    try:
        func_name = job.func_name
        job.args  # noqa: B018 - decoding is the check
        job.kwargs  # noqa: B018
    except DeserializationError as error:
        return JobLoadError(job.id, "its data (function name and arguments)", error.__cause__ or error)
    if func_name is None:
        return JobLoadError(job.id, "its function (no function name stored)")
    try:
        func = job.func
    except Exception as error:  # import_attribute raises ValueError, AttributeError, ImportError...
        return JobLoadError(job.id, f"function {func_name!r}", error)
    if func is None:
        return JobLoadError(job.id, f"function {func_name!r}")
    return None
