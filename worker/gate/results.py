"""Reading a job's results (rq's ``Result``) within a bound on their failure text.

rq's `Result.restore` runs ``zlib.decompress`` on a result's ``exc_string`` without a bound, so a
300 KB zlib bomb written to a job's result stream becomes 300 MB in whatever process reads it:
django-rq's job page, `worker.retries.failures.FailureRegistry`, our dashboard. `restore_result` decompresses
it first with `worker.gate.decompress.decompress_bounded`; a longer one becomes a short note naming the limit.
"""

from __future__ import annotations

import zlib
from base64 import b64decode, b64encode
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.results import Result
from rq.serializers import Serializer

from worker.gate.decompress import decompress_bounded


def result_stream_entries(
    connection: Redis[bytes], job_id: str, count: int | None = None
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries (result id, fields) of `job_id`'s result stream, newest first; `count` of them.

    rq internal: rq keeps a job's results in the Redis stream ``rq:results:<job id>``
    (`Result.get_key`), one entry a result, fields ``type``, ``return_value`` (base64 of the
    serialized value), ``exc_string`` (base64 of zlib of the traceback), ``worker_name``,
    ``execution_id``, ``execution_started_at``, ``execution_ended_at``; see rq's `results.py`.
    """
    key = Result.get_key(job_id)  # type: ignore[no-untyped-call]  # unannotated in rq
    entries: list[tuple[bytes, dict[bytes, bytes]]] = connection.xrevrange(key, "+", "-", count=count)
    return entries


def latest_result_request(pipeline: Pipeline[bytes], job_id: str) -> None:
    """Queue on `pipeline` the read of `job_id`'s newest result entry (rq internal: the stream, above)."""
    pipeline.xrevrange(Result.get_key(job_id), "+", "-", count=1)  # type: ignore[no-untyped-call]  # unannotated in rq


def latest_result_entry(
    connection: Redis[bytes], job_id: str, *, timeout: int = 0
) -> tuple[bytes, dict[bytes, bytes]] | None:
    """The newest entry of `job_id`'s result stream; with `timeout` (whole seconds), waits that long
    for a first one, as rq's `Result.fetch_latest` does (rq internal: the stream, see above)."""
    entries = result_stream_entries(connection, job_id, count=1)
    if entries or not timeout:
        return entries[0] if entries else None
    key = Result.get_key(job_id)  # type: ignore[no-untyped-call]  # unannotated in rq
    response = connection.xread({key: "0-0"}, count=1, block=timeout * 1000)
    if not response:
        return None
    first: tuple[bytes, dict[bytes, bytes]] = response[0][1][0]
    return first


def restore_result(
    job_id: str,
    result_id: str,
    fields: dict[Any, bytes],
    *,
    connection: Redis[bytes],
    serializer: Serializer | None,
    max_exc_bytes: int,
) -> Result:
    """rq's `Result.restore` of one stream entry, its ``exc_string`` inflated to `max_exc_bytes` at most."""
    fields = {key.decode() if isinstance(key, bytes) else key: value for key, value in fields.items()}
    raw = fields.get("exc_string")
    if raw:
        try:
            compressed = b64decode(raw)
        except ValueError:  # not base64: left to rq's restore, which fails on it and says why
            compressed = None
        if compressed is not None:
            text = decompress_bounded(compressed, max_exc_bytes)
            if text is None:
                text = f"(failure text over {max_exc_bytes} bytes; not loaded)".encode()
            fields["exc_string"] = b64encode(zlib.compress(text))  # what rq inflates: within the limit
    result: Result = Result.restore(job_id, result_id, fields, connection=connection, serializer=serializer)
    return result
