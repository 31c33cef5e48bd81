"""Bounds on what loading a job may cost: its data decompressed, its meta and failure text as stored.

rq's `Job.restore` runs ``zlib.decompress`` on a job's data (and failure text) without a bound, so
300 KB written to Redis becomes a gigabyte in whatever process reads the job: the worker at dequeue,
rq's registry cleanup at worker start, django-rq's pages. A job class made by `bounded_job_class`
decompresses with ``zlib.decompressobj().decompress(raw, limit + 1)``, so never more than the limit.

A job over a limit still loads, with its data unread, so whoever reads it (registries, crash
recovery, pages) can handle it: `oversize(job)` is the `JobTooLarge` naming the job, the field and
the limit; decoding its data raises it (wrapped in rq's ``DeserializationError``); saving the job
writes the stored bytes back as they were. Meta that decodes to something other than a JSON object
(``[1, 2, 3]``, ``"hello"``, ``null``: only a forged hash holds it) loads the same way, as ``{}``, and
`unloadable(job)` is the `MetaNotAnObject` naming it. A worker fails such a job at once after
dequeueing it (`worker.gate.loading`), and crash recovery fails it (no policy is read from it).

A job hash without a ``timeout`` (rq's queues always write one) loads with rq's default job timeout,
`Queue.DEFAULT_TIMEOUT`: rq's work-horse monitor adds to it. The job's results (`results()`,
`latest_result()`, read by django-rq's job page) are restored by `worker.gate.results.restore_result`,
their failure text bounded by ``max_exc_info_bytes`` as the hash's ``exc_info`` is.

Limits come from the worker's ``job_limits`` argument, else from
`install_job_limits` (the Django app installs ``RQ_SIGNALS["MAX_JOB_DATA_BYTES"]`` and
``["MAX_JOB_META_BYTES"]``), else `JobLimits()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from rq.exceptions import DeserializationError
from rq.job import Job
from rq.queue import Queue
from rq.utils import as_text, decode_redis_hash

from worker.exceptions import JobLoadError
from worker.gate import results
from worker.gate.decompress import decompress_bounded
from worker.gate.defaults import DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_EXC_INFO_BYTES, DEFAULT_MAX_META_BYTES
from worker.rq_compat import private as rq_private

if TYPE_CHECKING:
    from rq.results import Result


@dataclass(frozen=True)
class JobLimits:
    """How large a job's data (decompressed) and meta (as stored) may be, in bytes; see the module."""

    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    max_meta_bytes: int = DEFAULT_MAX_META_BYTES
    max_exc_info_bytes: int = DEFAULT_MAX_EXC_INFO_BYTES
    data_setting: str = "max_data_bytes of the worker's JobLimits"
    meta_setting: str = "max_meta_bytes of the worker's JobLimits"

    def __post_init__(self) -> None:
        for name in ("max_data_bytes", "max_meta_bytes", "max_exc_info_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"JobLimits: {name} must be a whole number of bytes > 0, got {value!r}")


class JobTooLarge(JobLoadError):
    """A job's data decompresses past its limit, or its meta is larger than its limit."""

    def __init__(self, job_id: str, field_name: str, limit: int, setting: str, stored: int) -> None:
        super().__init__(job_id, f"its {field_name}")
        how = "decompresses past" if field_name == "data" else "is larger than"
        self.args = (
            f"Job {job_id}: cannot load its {field_name}: it {how} {limit} bytes (the limit; "
            f"{stored} bytes stored), so it was not loaded; to load it, raise {setting}",
        )
        self.field_name = field_name
        self.limit = limit

    def __str__(self) -> str:
        return str(self.args[0])


class MetaNotAnObject(JobLoadError):
    """A job's meta decodes to something other than a JSON object (a dict): rq and our retries need one."""

    def __init__(self, job_id: str, meta: Any) -> None:
        super().__init__(job_id, "its meta")
        shown = repr(meta)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        self.args = (
            f"Job {job_id}: cannot load its meta: it is not a JSON object but "
            f"{'null' if meta is None else f'a {type(meta).__name__} ({shown})'}, so it was not loaded",
        )

    def __str__(self) -> str:
        return str(self.args[0])


def oversize(job: Job) -> JobTooLarge | None:
    """Why `job` was loaded without its data or meta (a limit of its bounded class), or None."""
    found = unloadable(job)
    return found if isinstance(found, JobTooLarge) else None


def unloadable(job: Job) -> JobLoadError | None:
    """Why `job` was loaded without its data or meta: over a limit, or meta that is no JSON object."""
    found: JobLoadError | None = getattr(job, "_too_large", None)
    return found


class BoundedJob(Job):
    """Base of the classes `bounded_job_class` makes; `limits()` are the bounds a restore obeys."""

    job_limits: ClassVar[JobLimits] = JobLimits()
    _too_large: JobLoadError | None = None
    _stored: dict[str, bytes] | None = None  # what an unloaded field held in Redis, written back on save

    def limits(self) -> JobLimits:
        return self.job_limits

    def restore(self, raw_data: Any) -> Any:
        # rq's restore decompresses `data` and `exc_info` without a bound: it gets them empty (b"" is
        # no zlib stream, and a falsy exc_info is skipped), and they are set here, bounded.
        obj = decode_redis_hash(raw_data)
        limits = self.limits()
        self._too_large, self._stored = None, {}
        data = exc_info = None
        if "data" in obj:
            raw = obj["data"]
            data = decompress_bounded(raw, limits.max_data_bytes)
            if data is None:
                self._note("data", raw, limits.max_data_bytes, limits.data_setting)
            obj["data"] = b""
        meta = raw_meta = obj.get("meta")
        if meta and len(meta) > limits.max_meta_bytes:
            self._note("meta", meta, limits.max_meta_bytes, limits.meta_setting)
            obj["meta"] = b""
        if obj.get("exc_info"):
            exc_info = decompress_bounded(obj["exc_info"], limits.max_exc_info_bytes)
            exc_info = (
                exc_info or f"(failure text over {limits.max_exc_info_bytes} bytes; not loaded)".encode()
            )
            obj["exc_info"] = b""
        result = super().restore(obj)
        if not isinstance(self.meta, dict):  # rq's own code and our retries call `meta.get`
            self._stored = {**(self._stored or {}), "meta": raw_meta or b""}
            self._too_large = self._too_large or MetaNotAnObject(self.id, self.meta)
            self.meta = {}
        if self.timeout is None:  # a forged hash: rq's work-horse monitor computes `timeout + 60`
            self.timeout = Queue.DEFAULT_TIMEOUT
        if data is not None:
            self.data = data
        if exc_info is not None:
            rq_private.set_stored_exc_info(self, as_text(exc_info))
        return result

    def results(self) -> list[Result]:
        return [
            self._restore_result(result_id, fields)
            for result_id, fields in results.result_stream_entries(self.connection, self.id)
        ]

    def latest_result(self, timeout: int = 0) -> Result | None:
        entry = results.latest_result_entry(self.connection, self.id, timeout=timeout)
        return self._restore_result(*entry) if entry is not None else None

    def _restore_result(self, result_id: bytes, fields: dict[bytes, bytes]) -> Result:
        return results.restore_result(
            self.id,
            result_id.decode(),
            fields,
            connection=self.connection,
            serializer=self.serializer,
            max_exc_bytes=self.limits().max_exc_info_bytes,
        )

    def _note(self, field_name: str, raw: bytes, limit: int, setting: str) -> None:
        stored = self._stored if self._stored is not None else {}
        stored[field_name] = raw
        self._stored = stored
        if self._too_large is None:  # the first field over its limit is the one named
            self._too_large = JobTooLarge(self.id, field_name, limit, setting, len(raw))

    def refuse_data_over_limit(self) -> None:
        """Before rq decodes the job's data (see `rq_private.override_deserialize_data`)."""
        if self._too_large is not None and "data" in (self._stored or {}):
            raise DeserializationError() from self._too_large

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        obj: dict[str, Any] = super().to_dict(include_meta=include_meta, include_result=include_result)
        for field_name, raw in (self._stored or {}).items():
            if field_name in obj:
                obj[field_name] = raw  # as it was stored: never our empty placeholder
        return obj


rq_private.override_deserialize_data(BoundedJob, BoundedJob.refuse_data_over_limit)

_lock = threading.Lock()
_bounded_classes: dict[tuple[type[Job], JobLimits], type[Job]] = {}


def bounded_job_class(job_class: type[Job], limits: JobLimits) -> type[Job]:
    """`job_class`, restoring jobs within `limits` (see the module docstring)."""
    if issubclass(job_class, BoundedJob) and job_class.job_limits == limits:
        return job_class
    with _lock:
        bounded = _bounded_classes.get((job_class, limits))
        if bounded is None:  # one class per job class and limits: a worker and its queues share it
            bounded = type(
                f"Bounded{job_class.__name__}",
                (BoundedJob, job_class) if not issubclass(job_class, BoundedJob) else (job_class,),
                {"job_limits": limits},
            )
            _bounded_classes[(job_class, limits)] = bounded
    return bounded


#: What `install_job_limits` takes: limits, a callable answering them, or None (the defaults).
LimitsSource: TypeAlias = "JobLimits | Callable[[], JobLimits] | None"
_installed: LimitsSource = None


def install_job_limits(limits: LimitsSource) -> LimitsSource:
    """The limits of every worker built later in this process without a ``job_limits`` argument.

    A callable is asked each time a worker is built; None: `JobLimits()`. Returns what was installed.
    """
    global _installed
    with _lock:
        previous, _installed = _installed, limits
    return previous


def limits_of(job_class: type[Job]) -> JobLimits:
    """The limits `job_class` restores within: its own if it is bounded, else the installed ones."""
    if issubclass(job_class, BoundedJob):
        return job_class.job_limits
    return installed_job_limits()


def installed_job_limits() -> JobLimits:
    """The limits `install_job_limits` installed (a callable's answer now), else `JobLimits()`."""
    with _lock:
        installed = _installed
    if installed is None:
        return JobLimits()
    return installed if isinstance(installed, JobLimits) else installed()
