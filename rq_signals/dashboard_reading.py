"""What a receiver call's job is, for people: receiver, signal, instance, attempts, last error.

The dashboard pages show a job of `rq_signals.jobs.run_receiver` through `read_receiver_job`, never
its raw payload: the instance as a label, pk and snapshot fields (read from the payload, never
fetched from the database), other arguments decoded, the attempt history from ``job.meta``.
Everything here is data from Redis: nothing is imported or called, every text is the templates'
to escape, and a payload that cannot be read raises `UnreadableJob` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rq.exceptions import DeserializationError
from rq.job import Job

from rq_signals import defaults
from rq_signals.dashboard_payload import Argument, InstanceRef, clip, read_argument, sender_label
from rq_signals.dashboard_tracebacks import Traceback, split_traceback
from rq_signals.listing import describe_retry
from worker.gate.limits import oversize
from worker.retries.attempts import Attempt, attempt_count, dropped_attempts, records_of, retries_used
from worker.retries.backoff import POLICY_META_KEY, Backoff

#: Longest error message in a list row, in characters.
ROW_ERROR_CHARS = 120


class UnreadableJob(Exception):
    """A job of ours whose data or payload cannot be read for display; the message says why."""


@dataclass(frozen=True)
class ErrorLine:
    exc_type: str
    message: str

    @property
    def short_type(self) -> str:
        return self.exc_type.rsplit(".", 1)[-1]

    @property
    def one_line(self) -> str:
        text = " ".join(f"{self.short_type}: {self.message}".split())
        return text if len(text) <= ROW_ERROR_CHARS else text[: ROW_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True)
class AttemptRow:
    """One attempt record with its traceback split for display and its duration in seconds."""

    attempt: Attempt
    duration: float | None
    traceback: Traceback | None

    @property
    def started(self) -> datetime | None:
        return parse_time(self.attempt.started_at)

    @property
    def retry_at(self) -> datetime | None:
        return parse_time(self.attempt.retry_at)


@dataclass(frozen=True)
class ReceiverJob:
    """A receiver call's job as the dashboard shows it."""

    job_id: str
    receiver_id: str
    signal: str
    sender: str
    instance: InstanceRef | None
    arguments: tuple[Argument, ...]
    attempts: tuple[Attempt, ...]
    attempts_dropped: int
    attempt_count: int
    max_attempts: int
    policy: str
    last_error: ErrorLine | None
    description: str

    @property
    def short_name(self) -> str:
        return self.receiver_id.rsplit(".", 1)[-1]

    @property
    def next_retry_at(self) -> datetime | None:
        last = self.attempts[-1] if self.attempts else None
        return parse_time(last.retry_at) if last is not None and last.outcome == "retrying" else None

    def attempt_rows(self) -> list[AttemptRow]:
        rows = []
        for a in self.attempts:
            text = a.traceback if isinstance(a.traceback, str) else None  # data from Redis: any JSON
            rows.append(AttemptRow(a, _duration(a), split_traceback(text) if text else None))
        return rows

    def matches(self, receiver: str, exc_type: str) -> bool:
        """Whether this job is `receiver`'s (dotted id or short name) and failed last with `exc_type`."""
        if receiver and receiver not in (self.receiver_id, self.short_name):
            return False
        if not exc_type:
            return True
        if self.last_error is None:
            return False
        actual = self.last_error.exc_type.removeprefix("builtins.")
        wanted = exc_type.removeprefix("builtins.")
        return actual == wanted or ("." not in wanted and actual.rsplit(".", 1)[-1] == wanted)


def read_receiver_job(job: Job) -> ReceiverJob | None:
    """`job` as the dashboard shows it; None if it is not a receiver call; `UnreadableJob` if unreadable."""
    too_large = oversize(job)
    if too_large is not None:
        raise UnreadableJob(str(too_large))
    try:
        func, args = job.func_name, job.args
    except (DeserializationError, ValueError, TypeError) as exc:
        raise UnreadableJob(f"Job {job.id}: its data cannot be decoded ({type(exc).__name__})") from exc
    if func != defaults.JOB_FUNCTION:
        return None
    if len(args) != 3 or not isinstance(args[0], str) or not isinstance(args[2], dict):
        raise UnreadableJob(
            f"Job {job.id}: expected (receiver, signal, payload) arguments, got {_short(args)}"
        )
    receiver_id, signal_path, payload = args
    kwargs = payload.get("kwargs")
    if not isinstance(kwargs, dict):
        raise UnreadableJob(f"Job {job.id}: its payload has no 'kwargs' object: {_short(payload)}")
    meta = job.meta if isinstance(job.meta, dict) else {}
    attempts = _attempts(meta)
    arguments = tuple(read_argument(name, value) for name, value in kwargs.items() if name != "sender")
    # The call's subject: ``instance`` (model signals), else the first argument that is an instance.
    named = sorted(arguments, key=lambda a: a.name != "instance")
    instance = next((a.instance for a in named if a.instance is not None), None)
    policy = _policy(meta)
    return ReceiverJob(
        job_id=job.id,
        receiver_id=receiver_id,
        signal=str(payload.get("signal") or signal_path.rsplit(".", 1)[-1]),
        sender=sender_label(kwargs.get("sender")),
        instance=instance,
        arguments=tuple(a for a in arguments if a.instance is not instance or instance is None),
        attempts=attempts,
        attempts_dropped=dropped_attempts(meta),
        attempt_count=attempt_count(meta),
        max_attempts=_max_attempts(meta, policy),
        policy=describe_retry(policy) if policy is not None else "no retry policy",
        last_error=_last_error(attempts, job),
        description=job.description or "",
    )


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _attempts(meta: dict[str, Any]) -> tuple[Attempt, ...]:
    attempts = []
    for record in records_of(meta):
        try:
            attempts.append(Attempt.from_dict(record))
        except (TypeError, AttributeError):
            continue  # an unreadable record (data from Redis) is left out of the table
    return tuple(attempts)


def _policy(meta: dict[str, Any]) -> Backoff | None:
    raw = meta.get(POLICY_META_KEY)
    try:
        return Backoff.from_dict(raw) if raw is not None else None
    except Exception:  # an invalid policy means "no retries", as on the worker (worker.policy.read_policy)
        return Backoff(max_retries=0)


def _max_attempts(meta: dict[str, Any], policy: Backoff | None) -> int:
    """How many attempts the current budget allows: where it started plus 1 + max_retries."""
    retries = policy.max_retries if policy is not None else 0
    records = records_of(meta)
    if records and isinstance(records[-1], dict) and records[-1].get("outcome") == "failed":
        before = {**meta, "attempts": records[:-1]}  # the budget the failure ended
        start = attempt_count(before) - retries_used(before)
    else:
        start = attempt_count(meta) - retries_used(meta)
    return start + retries + 1


def _last_error(attempts: tuple[Attempt, ...], job: Job) -> ErrorLine | None:
    for attempt in reversed(attempts):
        if attempt.exc_type:
            return ErrorLine(str(attempt.exc_type), clip(str(attempt.message or "")))
    text = getattr(job, "_exc_info", None)  # rq's failure text, read by restore (bounded by DashboardJob)
    if isinstance(text, str) and text.strip():
        last = text.strip().splitlines()[-1]
        exc_type, _, message = last.partition(": ")
        return ErrorLine(exc_type.strip(), clip(message))
    return None


def _duration(attempt: Attempt) -> float | None:
    started, ended = parse_time(attempt.started_at), parse_time(attempt.ended_at)
    return (ended - started).total_seconds() if started and ended else None


def _short(value: Any) -> str:
    return clip(repr(value))
