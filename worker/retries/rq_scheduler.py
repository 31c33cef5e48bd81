"""rq's own scheduler (`--with-scheduler`), minus our retries.

rq's scheduler polls whole seconds and pushes what is due without a guard, so a `RetryWorker`
started with `--with-scheduler` runs `RetryAwareScheduler` instead: it runs rq's jobs (`enqueue_at`,
rq's `Retry`) exactly as rq does and skips ours. A plain rq scheduler (`rqscheduler`, or a plain
`rq worker --with-scheduler` on the same queues) would not skip them: don't run one. Retries of
rate-limited jobs are not ours: rq's scheduler enqueues them through the rate limiter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import as_text, current_timestamp

from worker import keys
from worker.rq_compat import private as rq_private

if TYPE_CHECKING:
    from rq.worker import BaseWorker


class RetryAwareScheduledJobRegistry(ScheduledJobRegistry):
    """rq's scheduled registry, minus our retries, read in one MULTI so none slips between the two reads."""

    def get_jobs_to_schedule(self, timestamp: int | None = None, chunk_size: int = 1000) -> list[str]:
        score = timestamp if timestamp is not None else current_timestamp()
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(self.key, 0, score, start=0, num=chunk_size)
            pipe.zrangebyscore(keys.retries(self.name), 0, score)
            due, ours = pipe.execute()
        skip = set(ours)
        return [as_text(job_id) for job_id in due if job_id not in skip]


class RetryAwareScheduler(RQScheduler):
    """rq's scheduler for rq's scheduled jobs; our retries are left to the promoters."""

    def prepare_registries(self, queue_names: Any = None) -> None:
        names = queue_names or rq_private.scheduler_locks(self)
        registries = [
            RetryAwareScheduledJobRegistry(name, connection=self.connection, serializer=self.serializer)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
            for name in names
        ]
        rq_private.set_scheduler_registries(self, registries)


def start_scheduler(
    worker: BaseWorker,
    burst: bool = False,
    logging_level: str | None = "INFO",
    date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
    log_format: str = DEFAULT_LOGGING_FORMAT,
) -> None:
    """rq's `--with-scheduler` start (`BaseWorker._start_scheduler`), with `RetryAwareScheduler` in place
    of the scheduler class rq hard-codes."""
    scheduler = worker.scheduler = RetryAwareScheduler(
        worker.queues,
        connection=worker.connection,
        logging_level=logging_level if logging_level is not None else worker.log.level,
        date_format=date_format,
        log_format=log_format,
        serializer=worker.serializer,
    )
    scheduler.acquire_locks()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    if not scheduler.acquired_locks:
        return
    if burst:
        try:
            scheduler.register_birth()
            scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        finally:
            scheduler.release_locks()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
            scheduler.register_death()
    else:
        scheduler.start()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
