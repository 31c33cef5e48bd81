"""rq's Redis layout, where we write it ourselves: the keys we spell and the writes we make by hand.

rq's API writes a job's hash whole, its heartbeat in three commands and its dequeue in five; our
round-trip shortcuts and scripts send the same writes together. Every key of rq's that we spell
and every write of rq's layout made outside rq's own API is here, or in a script in `scripts/`
(each with its keys documented at its top). A change of rq's layout is then found in one place:
`make compat` runs rq's own suite against our workers.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rq.defaults import DEFAULT_FAILURE_TTL
from rq.job import JobStatus
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import current_timestamp, now, utcformat

from worker import lua

if TYPE_CHECKING:
    from datetime import datetime

    from redis import Redis
    from redis.client import Pipeline
    from redis.commands.core import Script
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import BaseWorker

SCRIPTS_DIR = Path(__file__).with_name("scripts")
#: Seconds rq's worker hash outlives its TTL (rq's `heartbeat`: `worker_ttl + 60`).
HEARTBEAT_EXTRA_SECONDS = 60


def script_text(name: str) -> str:
    """The text of `worker/rq_compat/scripts/<name>`, a script that writes rq's layout."""
    return lua.script_text(name, SCRIPTS_DIR)


def intermediate_key(worker: BaseWorker, queue_name: str) -> str:
    """rq's `Queue.intermediate_queue_key` of `queue_name`, without building a Queue."""
    return f"{worker.queue_class.redis_queue_namespace_prefix}{queue_name}:intermediate"


def first_seen_key(intermediate_key: str, job_id: str) -> str:
    """rq's key for when a job was first seen stuck in `intermediate_key` (`IntermediateQueue`)."""
    return f"{intermediate_key}:first_seen:{job_id}"


def queue_meta(pipeline: Pipeline[Any], job: Job, meta: bytes) -> None:
    """Save `job`'s serialized `meta` in its hash (what `Job.save_meta` sends), on `pipeline`."""
    pipeline.hset(job.key, "meta", meta)


def queue_last_heartbeat(pipeline: Pipeline[Any], job: Job) -> None:
    """Save `job.last_heartbeat` in its hash (what `Job.heartbeat` sends, less the registry), on
    `pipeline`."""
    if job.last_heartbeat is not None:
        pipeline.hset(job.key, "last_heartbeat", utcformat(job.last_heartbeat))


def pop_waiting_job(
    script: Script, worker: BaseWorker, queues: list[Queue], beat_at: datetime, *, check_suspension: bool
) -> Any:
    """Run `dequeue_job.lua` for `worker` over `queues` (in order): its reply (see the script)."""
    # Each job moves into its queue's intermediate list, even from several queues (rq pops those
    # outright): a worker killed before starting it leaves it there to be put back.
    queue_keys = [key for queue in queues for key in (queue.key, queue.intermediate_queue_key)]
    return script(
        keys=[worker.key, worker.executions_key, WORKERS_SUSPENDED, *queue_keys],
        args=[
            "lmove",
            utcformat(beat_at),
            worker.worker_ttl + HEARTBEAT_EXTRA_SECONDS,
            worker.job_class.redis_job_namespace_prefix,
            "check" if check_suspension else "",
        ],
    )


def queue_start_preparation(pipeline: Pipeline[Any], job: Job, intermediate_key: str) -> None:
    """rq's `prepare_job_execution` writes that its API cannot queue on another pipeline: the job hash
    made persistent, and the id taken off its queue's intermediate list (rq does that only for a worker
    of one queue; our dequeue moves every job through it, and LREM removes nothing otherwise)."""
    pipeline.persist(job.key)
    pipeline.lrem(intermediate_key, 1, job.id)


def drop_from_intermediate(connection: Redis[Any] | Pipeline[Any], queue: Queue, raw_id: bytes | str) -> None:
    """Take `raw_id` off `queue`'s intermediate list."""
    connection.lrem(queue.intermediate_queue_key, 1, raw_id)


def remove_from_registry(
    connection: Redis[Any] | Pipeline[Any], registry_key: str, *members: bytes | str
) -> Any:
    """ZREM `members` from one of rq's registries (started, failed, ready...): how many it removed,
    or, on a pipeline, the pipeline."""
    return connection.zrem(registry_key, *members)


def queue_failed_by_hand(
    pipeline: Pipeline[Any],
    queue: Queue,
    job_key: bytes | str,
    member: bytes | str,
    exc_text: str,
    *,
    expire: bool,
) -> None:
    """A job FAILED without loading it, as rq's failure path leaves it: status, `exc_text` as
    ``exc_info`` and the end time on its hash, its entry in `queue`'s failed registry, `member` taken
    off the intermediate list; with `expire`, the hash expires with that entry."""
    pipeline.hset(
        job_key,
        mapping={
            "status": JobStatus.FAILED.value,
            "exc_info": zlib.compress(exc_text.encode()),
            "ended_at": utcformat(now()),
        },
    )
    if expire:
        pipeline.expire(job_key, DEFAULT_FAILURE_TTL)
    pipeline.zadd(queue.failed_job_registry.key, {member: current_timestamp() + DEFAULT_FAILURE_TTL})
    pipeline.lrem(queue.intermediate_queue_key, 1, member)


def write_new_jobs(
    client: Redis[Any] | Pipeline[Any],
    queue: Queue,
    job_ids: list[str],
    values: list[str | bytes],
    *,
    created_at: datetime,
) -> None:
    """What rq's `Queue.enqueue_many` writes for new jobs of `queue`, in one `write_jobs.lua` (sent, or
    queued on a pipeline): `values` holds, per job in `job_ids`' order, its zlib-compressed data,
    description, timeout and serialized meta (b"" for none)."""
    keys = [
        queue.redis_queues_keys,
        queue.key,
        *(queue.job_class.redis_job_namespace_prefix + i for i in job_ids),
    ]
    argv: list[str | bytes] = [utcformat(created_at), queue.name]
    for index, job_id in enumerate(job_ids):
        argv += (job_id, *values[index * 4 : index * 4 + 4])
    # EVAL with the text, not EVALSHA: one round trip always (Redis caches the compiled script).
    client.execute_command("EVAL", script_text("write_jobs.lua"), len(keys), *keys, *argv)
