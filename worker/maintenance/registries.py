"""rq's registry maintenance, each queue on its own, less rq's `IntermediateQueue.cleanup`.

rq's cleanup of an intermediate list builds a `Job` for every id in it, so one id rq refuses
(``"*"``, pushed by whoever can write to Redis) raised out of the work loop and stopped the worker;
it also reads the whole started registry for each id, and fails a stuck job a minute after our
rescue (`worker.safety.intermediate`, every recovery scan) would have put it back.

The same ids in the started or ready registry made rq's own registry cleanup raise, at start and
every maintenance pass: `job_ids.purge_registries` fails them first, and anything else rq's
maintenance of one queue raises is logged with the queue's name; the worker goes on (Redis being
unreachable still goes to `worker.safety.reconnect`, which waits for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rq import worker_registration
from rq.registry import clean_registries as rq_clean_registries
from rq.utils import now

from worker.gate import job_ids
from worker.rq_compat import private as rq_private
from worker.safety.reconnect import REDIS_DOWN

if TYPE_CHECKING:
    from rq.queue import Queue
    from rq.worker import BaseWorker


def clean_registries(worker: BaseWorker) -> None:
    """rq's `BaseWorker.clean_registries`, less its last step, each queue on its own."""
    for queue in worker.queues:
        if queue.acquire_maintenance_lock():
            worker.log.info("Worker %s: cleaning registries for queue: %s", worker.name, queue.name)
            try:
                _clean_queue_registries(worker, queue)
            except REDIS_DOWN:
                raise
            except Exception:
                worker.log.exception(
                    "Queue %s: registry maintenance failed; worker %s goes on", queue.name, worker.name
                )
            queue.release_maintenance_lock()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    worker.last_cleaned_at = now()  # type: ignore[assignment]  # rq annotates it None, sets datetimes


def clean_group_registries(worker: BaseWorker, rq: Callable[[], None]) -> None:
    """rq's group cleanup (`rq`), which decodes each member of each group as text: one member that is
    not UTF-8 raised out of the maintenance and ended the worker. rq's lock expires by itself."""
    try:
        rq()
    except REDIS_DOWN:
        raise
    except Exception:
        worker.log.exception("Worker %s: group registry maintenance failed; it goes on", worker.name)


def _clean_queue_registries(worker: BaseWorker, queue: Queue) -> None:
    for error in job_ids.purge_registries(worker.connection, queue):
        worker.log.error("%s; moved to the failed registry of %r", error, queue.name)
    rq_clean_registries(queue, rq_private.exception_handlers(worker))
    worker_registration.clean_worker_registry(queue)
