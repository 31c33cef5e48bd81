"""`FailureRegistry`: which jobs failed, every attempt at them, and requeueing with a fresh budget.

A view, not a store: the job ids are rq's own `FailedJobRegistry` (the list
django-rq's dashboard shows), the history is `job.meta["attempts"]` (written
by `RetryHandler`), and for jobs failed by plain rq the error comes from rq's
latest `Result`. Requeueing goes through rq's `requeue`, so statuses and
registries stay right; it resets the retry budget, never the history.

An entry whose id rq would not accept (``"*"``, ``"a b"``, ``"x:y"``: whoever can write to Redis
can put one there, and a worker fails such a job under its raw id, `worker.gate.job_ids`) is skipped by
every listing and bulk action with a warning naming it, and removed from the registry by `purge`.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.serializers import Serializer

from worker.exceptions import NoSuchFailedJob
from worker.gate.job_ids import RQ_RULE, as_text, id_repr, is_valid_job_id
from worker.gate.limits import bounded_job_class, limits_of
from worker.gate.results import latest_result_request, restore_result
from worker.retries.attempts import (
    ATTEMPTS_META_KEY,
    BUDGET_START_META_KEY,
    Attempt,
    attempt_count,
    dropped_attempts,
    utcnow,
)
from worker.rq_compat import layout as rq_layout
from worker.rq_compat import private as rq_private
from worker.text import short_repr, truncate

logger = logging.getLogger(__name__)

#: Failed jobs fetched per Redis round trip.
FETCH_CHUNK_JOBS = 500
#: Longest `FailedJob.args` summary, and longest repr of one argument within it, in characters.
ARGS_SUMMARY_CHARS = 120
ARG_REPR_CHARS = 50

_EXC_LINE = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?:: (?P<message>.*))?$")


@dataclass(frozen=True)
class ErrorSummary:
    """An exception as a human reads it; `exc_type` dotted as in tracebacks (`ValueError`, `shop.Declined`).

    `exc_type` is None when rq recorded a failure that was not an exception (a work horse killed by a signal).
    """

    exc_type: str | None
    message: str


@dataclass(frozen=True)
class FailedJob:
    """One job in the failed registry; `func` is None (`args` says why) if its job data cannot be decoded."""

    job_id: str
    func: str | None
    args: str
    attempts: tuple[Attempt, ...]  # the first and the latest: see `attempts_dropped`
    last_error: ErrorSummary | None
    failed_at: datetime
    #: Attempts dropped from the middle of the stored history (`worker.retries.attempts` keeps it capped).
    attempts_dropped: int = 0

    @property
    def attempt_count(self) -> int:
        """How many attempts the job had, the dropped ones included."""
        return len(self.attempts) + self.attempts_dropped


class FailureRegistry:
    """The failed jobs of one queue, read from and acted on through rq's `FailedJobRegistry`."""

    def __init__(
        self,
        queue: Queue | str,
        connection: Redis[bytes] | None = None,
        serializer: Serializer | str | None = None,
        on_skip: Callable[[str], None] | None = None,
    ) -> None:
        """`queue` by name needs its `connection`; jobs are read with `serializer` (rq's pickle when
        None), or with the queue's own when a `Queue` is given. `on_skip` is told of each entry skipped
        or removed because rq cannot read its id (a line naming it); by default it is logged as a warning."""
        self._on_skip = on_skip
        # Jobs are read within limits (`worker.gate.limits`): a forged hash (a zlib bomb, meta that is no
        # JSON object) is listed, never inflated in full nor a crash of the listing.
        if isinstance(queue, Queue):
            job_class = bounded_job_class(queue.job_class, limits_of(queue.job_class))
            self._registry = FailedJobRegistry(queue=queue, job_class=job_class)
        elif connection is None:
            raise ValueError(f"FailureRegistry: queue {queue!r} is given by name, so pass its connection too")
        else:
            job_class = bounded_job_class(Job, limits_of(Job))
            self._registry = FailedJobRegistry(
                queue, connection=connection, serializer=serializer, job_class=job_class
            )
        self.queue_name: str = self._registry.name

    def count(self) -> int:
        """How many jobs rq's failed registry holds, as django-rq's dashboard counts them."""
        return self._registry.count

    def list(
        self, func: str | None = None, exc_type: str | None = None, since: datetime | None = None
    ) -> builtins.list[FailedJob]:
        """The failed jobs, newest first, matching every filter given.

        `func` is an exact dotted path; `exc_type` a class name (`"ValueError"`, any module) or a dotted
        path (`"builtins.ValueError"`, `"shop.errors.Declined"`); `since` keeps failures at or after it
        (naive datetimes are UTC). Entries whose job hash has expired are dropped from rq's registry too.
        """
        entries = [entry for _, entry in self._matching(func, exc_type, since)]
        return sorted(entries, key=lambda entry: entry.failed_at, reverse=True)

    def requeue(self, job_id: str) -> Job:
        """Put a failed job back on its queue with a fresh retry budget; its attempt history is kept."""
        if job_id not in self._registry:
            raise NoSuchFailedJob(job_id, self.queue_name)
        if not is_valid_job_id(job_id):
            raise ValueError(
                f"Job {id_repr(job_id)}: in the failed registry of {self.queue_name!r}, but not a job id "
                f"rq accepts ({RQ_RULE}), so it cannot be requeued; purge removes it"
            )
        try:
            job = self._registry.job_class.fetch(
                job_id, connection=self._registry.connection, serializer=self._registry.serializer
            )
        except NoSuchJobError as exc:
            self._registry.remove(job_id)
            raise NoSuchFailedJob(job_id, self.queue_name) from exc
        return self._requeue(job)

    def requeue_all(
        self, func: str | None = None, exc_type: str | None = None, since: datetime | None = None
    ) -> int:
        """Requeue every failed job matching the filters (as in `list`); returns how many were requeued."""
        requeued = 0
        for job, _ in self._matching(func, exc_type, since):
            try:
                self._requeue(job)
            except NoSuchFailedJob:
                logger.info(
                    "Job %s: left the failed registry of %r before it could be requeued",
                    job.id,
                    self.queue_name,
                )
            else:
                requeued += 1
        return requeued

    def purge(self, older_than: timedelta | None = None) -> int:
        """Delete failed jobs (hash, results, registry entry) that failed more than `older_than` ago, or all.

        Returns how many jobs were deleted.
        """
        cutoff = None if older_than is None else utcnow() - older_than
        job_ids, unreadable_entries = self._ids()
        doomed = [job for job, entry in self._entries(job_ids) if cutoff is None or entry.failed_at < cutoff]
        unreadable = [
            raw
            for raw, score in unreadable_entries
            if cutoff is None or datetime.fromtimestamp(score - DEFAULT_FAILURE_TTL, timezone.utc) < cutoff
        ]
        for raw in unreadable:
            # The entry only: the hash under an id rq refuses may be another job's key ("<id>:dependents").
            rq_layout.remove_from_registry(self._registry.connection, self._registry.key, raw)
            self._skip(raw, "removed from the registry (its hash, if any, expires on its own)")
        for start in range(0, len(doomed), FETCH_CHUNK_JOBS):
            with self._registry.connection.pipeline() as pipeline:
                for job in doomed[start : start + FETCH_CHUNK_JOBS]:
                    job.delete(pipeline=pipeline)  # rq's delete: hash, results, executions, registry entry
                pipeline.execute()
        return len(doomed) + len(unreadable)

    def _requeue(self, job: Job) -> Job:
        if set(job.meta) == {"unserialized"}:  # rq could not read the meta; writing it back would lose it
            logger.warning("Job %s: meta unreadable, requeued without resetting its retry budget", job.id)
        else:
            # Saved by rq's enqueue in the same transaction that puts the job back on its queue.
            job.meta[BUDGET_START_META_KEY] = attempt_count(job.meta)
        try:
            return self._registry.requeue(job)
        except InvalidJobOperation as exc:  # someone else requeued or deleted it since we read it
            raise NoSuchFailedJob(job.id, self.queue_name) from exc

    def _matching(
        self, func: str | None, exc_type: str | None, since: datetime | None
    ) -> Iterator[tuple[Job, FailedJob]]:
        since = None if since is None else _aware(since)
        job_ids, unreadable = self._ids()
        for raw, _ in unreadable:
            self._skip(raw, "skipped")
        for job, entry in self._entries(job_ids):
            if func is not None and entry.func != func:
                continue
            if exc_type is not None and not _type_matches(entry.last_error, exc_type):
                continue
            if since is not None and entry.failed_at < since:
                continue
            yield job, entry

    def _entries(self, job_ids: builtins.list[str]) -> Iterator[tuple[Job, FailedJob]]:
        """The failed jobs of `job_ids` with their entries; hashes, latest results and scores, one
        round trip a chunk."""
        for start in range(0, len(job_ids), FETCH_CHUNK_JOBS):
            chunk = job_ids[start : start + FETCH_CHUNK_JOBS]
            with self._registry.connection.pipeline(transaction=False) as pipeline:
                for job_id in chunk:
                    pipeline.hgetall(self._registry.job_class.key_for(job_id))
                    latest_result_request(pipeline, job_id)
                    pipeline.zscore(self._registry.key, job_id)
                replies = pipeline.execute()
            expired = []
            for index, job_id in enumerate(chunk):
                raw_job, raw_results, score = replies[3 * index : 3 * index + 3]
                if not raw_job:
                    expired.append(job_id)
                    continue
                job = self._restore(job_id, raw_job)
                if job is not None:
                    yield job, self._entry(job, self._result(job_id, raw_results), score)
            if expired:  # as django-rq's failed-jobs page does
                rq_layout.remove_from_registry(self._registry.connection, self._registry.key, *expired)

    def _ids(self) -> tuple[builtins.list[str], builtins.list[tuple[bytes, float]]]:
        """The registry's job ids, and the entries (raw id, score) whose id rq would not accept (no
        `Job` can be built for them), after rq's cleanup of expired entries, oldest first. Read here,
        not with rq's `get_job_ids`, which fails on an entry that is not UTF-8."""
        self._registry.cleanup()
        job_ids: builtins.list[str] = []
        unreadable: builtins.list[tuple[bytes, float]] = []
        for raw, score in self._registry.connection.zrange(self._registry.key, 0, -1, withscores=True):
            text = as_text(raw)
            if is_valid_job_id(text):
                job_ids.append(text)
            else:
                unreadable.append((raw, score))
        return job_ids, unreadable

    def _skip(self, raw_id: bytes, what: str) -> None:
        message = (
            f"Job {id_repr(as_text(raw_id))}: in the failed registry of {self.queue_name!r}, "
            f"but not a job id rq accepts ({RQ_RULE}); {what}"
        )
        if self._on_skip is None:
            logger.warning("%s", message)
        else:
            self._on_skip(message)

    def _restore(self, job_id: str, raw_job: dict[bytes, bytes]) -> Job | None:
        job = self._registry.job_class(
            job_id, connection=self._registry.connection, serializer=self._registry.serializer
        )
        try:
            job.restore(raw_job)
        except NoSuchJobError:
            logger.warning(
                "Job %s: hash in %r's failed registry is not an rq job; skipped", job_id, self.queue_name
            )
            return None
        return job

    def _result(self, job_id: str, raw_results: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> Result | None:
        if not raw_results:
            return None
        result_id, payload = raw_results[0]
        limits = limits_of(self._registry.job_class)
        try:
            return restore_result(  # its failure text bounded: a zlib bomb there is a short note
                job_id,
                result_id.decode(),
                payload,
                connection=self._registry.connection,
                serializer=self._registry.serializer,
                max_exc_bytes=limits.max_exc_info_bytes,
            )
        except Exception:
            logger.warning(
                "Job %s: latest result unreadable; error taken from the job hash", job_id, exc_info=True
            )
            return None

    def _entry(self, job: Job, result: Result | None, score: float | None) -> FailedJob:
        attempts = _attempts(job)
        func, args = _call_summary(job)
        return FailedJob(
            job_id=job.id,
            func=func,
            args=args,
            attempts=attempts,
            last_error=_last_error(job, attempts, result),
            failed_at=_failed_at(job, attempts, score),
            attempts_dropped=dropped_attempts(job.meta),
        )


def _attempts(job: Job) -> tuple[Attempt, ...]:
    records = job.meta.get(ATTEMPTS_META_KEY, [])
    attempts = []
    for record in records if isinstance(records, builtins.list) else []:
        try:
            attempts.append(Attempt.from_dict(record))
        except (TypeError, AttributeError):
            logger.warning(
                "Job %s: unreadable attempt record %s skipped", job.id, short_repr(record, ARG_REPR_CHARS)
            )
    return tuple(attempts)


def _call_summary(job: Job) -> tuple[str | None, str]:
    try:
        func, args, kwargs = job.func_name, job.args, job.kwargs
    except DeserializationError as exc:
        cause = exc.__cause__ or exc
        return None, f"<undecodable job data: {type(cause).__name__}>"
    parts = [short_repr(arg, ARG_REPR_CHARS) for arg in args]
    parts += [f"{key}={short_repr(value, ARG_REPR_CHARS)}" for key, value in kwargs.items()]
    return func, truncate(", ".join(parts), ARGS_SUMMARY_CHARS)


def _last_error(job: Job, attempts: tuple[Attempt, ...], result: Result | None) -> ErrorSummary | None:
    """From the last attempt that recorded an error; else from rq's latest failed Result or the job hash."""
    for attempt in reversed(attempts):
        if attempt.exc_type is not None:
            return ErrorSummary(attempt.exc_type, attempt.message or "")
    if result is not None and result.type == Result.Type.FAILED and result.exc_string:
        return _parse_exc_string(result.exc_string)
    # As Job.restore read it: the public `exc_info` is deprecated and refetches.
    exc_info = rq_private.stored_exc_info(job)
    return _parse_exc_string(exc_info) if exc_info else None


def _parse_exc_string(text: str) -> ErrorSummary:
    """The final exception of a formatted traceback: the first unindented line after the last frames."""
    lines = text.rstrip().splitlines()
    start = max((i + 1 for i, line in enumerate(lines) if line.startswith("Traceback (")), default=0)
    while start < len(lines) and (not lines[start] or lines[start][0].isspace()):
        start += 1
    match = _EXC_LINE.match(lines[start]) if start < len(lines) else None
    if match is None:
        return ErrorSummary(None, text.strip())
    message = "\n".join([match["message"] or "", *lines[start + 1 :]]).strip()
    return ErrorSummary(match["type"], message)


def _type_matches(error: ErrorSummary | None, wanted: str) -> bool:
    if error is None or error.exc_type is None:
        return False
    actual = error.exc_type.removeprefix("builtins.")
    if "." not in wanted:  # a bare class name matches it in any module
        return actual.rsplit(".", 1)[-1] == wanted
    return actual == wanted.removeprefix("builtins.")


def _failed_at(job: Job, attempts: tuple[Attempt, ...], score: float | None) -> datetime:
    if job.ended_at is not None:
        return _aware(job.ended_at)
    if attempts:
        return _aware(datetime.fromisoformat(attempts[-1].ended_at))
    ttl = job.failure_ttl or DEFAULT_FAILURE_TTL
    if score is not None and ttl > 0:  # rq scores failed jobs by when they expire: failure time + ttl
        return datetime.fromtimestamp(score - ttl, timezone.utc)
    return _aware(job.created_at)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
