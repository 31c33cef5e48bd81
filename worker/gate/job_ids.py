"""Job ids rq would not accept, found in a queue, an intermediate list or a job registry.

rq builds a `Job` only for an id of letters, digits, ``_`` and ``-`` (`rq.job.validate_job_id`), and
reads an id with a ``:`` as ``<job_id>:<execution_id>`` (`rq.job.parse_job_id`): ``"x:y"`` becomes
job ``x``. Whoever can write to Redis can push any bytes onto a queue, so a worker fails such an id
at once under its raw id when a hash is stored there, else drops it with a warning naming it (never
put back on a queue; rq's own blocking pop still reads ``"<id>:x"`` as job ``<id>``), and readers
of the failed registry (the `worker.retries.failures.FailureRegistry` behind ``manage.py rqsignals``) skip
it with a warning naming it.

rq's registry maintenance (`rq.registry.clean_registries`) builds a `Job` for each expired entry of
the started registry (``<job_id>:<execution_id>``) and each entry of the ready registry: one entry
``"a b"``, ``"*"`` or ``"x:y:z"`` raised out of it and ended every worker at start. `purge_registries`
runs first and fails such entries under their raw id, looking only at entries rq's cleanup reads,
at most `REGISTRY_BATCH` of each registry a pass. (rq's finished and failed cleanups delete by score,
its deferred cleanup does nothing: none of them builds a job.)
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from rq.job import JOB_ID_PATTERN
from rq.registry import ReadyJobRegistry
from rq.utils import current_timestamp

from worker.exceptions import JobLoadError
from worker.rq_compat import layout as rq_layout
from worker.text import short_repr

if TYPE_CHECKING:
    from redis import Redis
    from rq.queue import Queue
    from rq.worker import BaseWorker

#: What rq's `validate_job_id` says of an id it refuses; repeated in our errors so they grep alike.
RQ_RULE = "Job ID must only contain letters, numbers, underscores and dashes"
#: Most entries of one registry looked at per maintenance pass; the next pass takes the next ones.
REGISTRY_BATCH = 1000
#: Longest repr of a bad id in an error or a log line, in characters.
ID_REPR_CHARS = 80


def is_valid_job_id(job_id: object) -> bool:
    """Whether rq accepts `job_id` as a job's id (`rq.job.validate_job_id`, without raising)."""
    return isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id) is not None


def is_valid_started_entry(entry: str) -> bool:
    """Whether rq's started-registry cleanup can read `entry` (``<job_id>[:<execution_id>]``) without
    raising: `rq.utils.parse_composite_key` unpacks at most two parts, and `Job.fetch` validates the id."""
    parts = entry.split(":")
    return len(parts) <= 2 and is_valid_job_id(parts[0])


def is_valid_plain_entry(entry: str) -> bool:
    """Whether `rq.job.parse_job_id` makes an id rq accepts of `entry` (what `Job.fetch_many` reads)."""
    return is_valid_job_id(entry.split(":")[0])


def as_text(job_id: bytes | str) -> str:
    """`job_id` as text; bytes that are not UTF-8 (a forged id) show as backslash escapes."""
    return job_id.decode("utf-8", "backslashreplace") if isinstance(job_id, bytes) else job_id


def id_repr(job_id: str) -> str:
    """`job_id` as an error names it: repr'd (a space or a newline shows), truncated."""
    return short_repr(job_id, ID_REPR_CHARS)


class InvalidJobId(JobLoadError):
    """A job id rq would not accept: it cannot be loaded, run or put back, only failed by its raw id."""

    def __init__(self, job_id: str, where: str) -> None:
        super().__init__(job_id, "it")
        self.args = (f"Job {id_repr(job_id)}: invalid job id found in {where} ({RQ_RULE}); failed",)

    def __str__(self) -> str:
        return str(self.args[0])


def fail_invalid(connection: Redis[Any], queue: Queue, raw_id: bytes | str, where: str) -> InvalidJobId:
    """Fail `job_id` (an id rq refuses) in `queue`'s failed registry under its raw id, as
    `worker.gate.loading.fail_at_once` fails an unreadable job: status, error and end time on its hash,
    the registry entry, the id taken off the intermediate list. The hash expires with the entry,
    so nothing a reader cannot load outlives it."""
    error = InvalidJobId(as_text(raw_id), where)
    raw = raw_id.encode() if isinstance(raw_id, str) else raw_id
    job_key = queue.job_class.redis_job_namespace_prefix.encode() + raw  # as `Job.key_for`, in bytes
    record_failure(connection, queue, job_key, raw, error, expire=True)
    return error


def record_failure(
    connection: Redis[Any],
    queue: Queue,
    job_key: bytes | str,
    member: bytes | str,
    error: BaseException,
    *,
    expire: bool,
    worker: BaseWorker | None = None,
) -> None:
    """Write a job FAILED without loading it, in one transaction: status, `error`'s traceback as
    ``exc_info`` and the end time on its hash, its entry in `queue`'s failed registry, and `member`
    taken off the intermediate list; with `expire`, the hash expires with that entry; with `worker`,
    its failed-job count goes up by one, as rq counts a job it could not run."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    with connection.pipeline() as pipe:
        rq_layout.queue_failed_by_hand(pipe, queue, job_key, member, text, expire=expire)
        if worker is not None:
            worker.increment_failed_job_count(pipeline=pipe)
        pipe.execute()


def purge_registries(connection: Redis[Any], queue: Queue, *, limit: int | None = None) -> list[InvalidJobId]:
    """Take out of `queue`'s started and ready registries the entries rq's registry cleanup would
    raise on, and fail each under its raw id (only the caller whose ZREM removed it). Started: the
    first `limit` (`REGISTRY_BATCH`) expired entries, as rq's cleanup reads them; ready: the first
    `limit` entries."""
    limit = REGISTRY_BATCH if limit is None else limit
    started = queue.started_job_registry.key
    ready = ReadyJobRegistry(queue.name, connection=connection).key
    batches = (
        (started, connection.zrangebyscore(started, "-inf", current_timestamp(), start=0, num=limit), True),
        (ready, connection.zrange(ready, 0, limit - 1), False),
    )
    failed = []
    for key, entries, composite in batches:
        for raw in entries:
            entry = as_text(raw)
            valid = is_valid_started_entry(entry) if composite else is_valid_plain_entry(entry)
            if not valid and rq_layout.remove_from_registry(connection, key, raw):
                failed.append(fail_invalid(connection, queue, raw, f"the registry {key!r}"))
    return failed
