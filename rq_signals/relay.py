"""The outbox relay: drains `rq_signals.outbox` rows into Redis, each job id once, until the outbox is empty.

Every worker runs `relay_for_worker` as a maintenance chore (`register_relay`, called by
``RqSignalsConfig.ready()``, puts it in `worker.maintenance.chores`), and ``manage.py rqsignals relay`` runs
`relay_once` (``--once``) or `relay_forever`. Rows are claimed in primary-key order, a batch per
transaction, with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it (PostgreSQL,
MySQL 8, Oracle), so concurrent relays split the rows and a batch's rows are deleted in the
transaction that claimed them; on SQLite relays may read the same rows, and no transaction spans the
Redis round trip. Either way the Redis side (`outbox.enqueue_once`) enqueues a job id once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.db import DatabaseError, connections, router, transaction
from django.db.models import F

from rq_signals import defaults
from rq_signals.conf import conf
from rq_signals.models import OutboxEntry
from rq_signals.outbox import OutboxJob, describe_error, discard, enqueue_once
from worker.maintenance.chores import register_maintenance

logger = logging.getLogger(__name__)


@dataclass
class RelayReport:
    """What one relay pass did: job ids enqueued, ids Redis already had, rows still waiting (and why)."""

    enqueued: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)  # database alias -> rows left behind
    errors: dict[str, str] = field(default_factory=dict)  # database alias -> why they were left

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def found_rows(self) -> bool:
        return bool(self.enqueued or self.already_there or self.errors)

    def __str__(self) -> str:
        text = f"Outbox: relayed {len(self.enqueued)} job(s), {len(self.already_there)} already in Redis"
        for alias, error in self.errors.items():
            text += f"; {self.waiting.get(alias, 0)} job(s) wait in database {alias!r}: {error}"
        return text


def relay_once(*, using: str | None = None, batch_size: int = defaults.OUTBOX_BATCH_SIZE) -> RelayReport:
    """Drain the outbox of database `using` (by default, of every database that has the outbox table).

    A database that fails (down, table missing) is reported and the others are still drained.
    """
    report = RelayReport()
    for alias in [using] if using else connections:
        try:
            if using or has_outbox(alias):
                _relay_database(alias, batch_size, report)
                if alias in report.errors:
                    report.waiting[alias] = OutboxEntry.objects.using(alias).count()
        except DatabaseError as exc:
            report.errors[alias] = describe_error(exc)
    if report.found_rows:
        (logger.info if report.ok else logger.warning)("%s", report)
    return report


def relay_forever(
    *,
    interval_seconds: float = defaults.OUTBOX_RELAY_INTERVAL_SECONDS,
    stop: threading.Event | None = None,
    using: str | None = None,
    on_pass: Callable[[RelayReport], object] | None = None,
) -> None:
    """Relay every `interval_seconds` (float seconds) until `stop` is set; a failed pass is logged.

    `on_pass` gets the report of each pass that found rows (the command prints it).
    """
    stop = stop or threading.Event()
    while not stop.is_set():
        report = relay_for_worker(using=using)
        if on_pass is not None and report is not None and report.found_rows:
            on_pass(report)
        stop.wait(interval_seconds)


def relay_for_worker(*, using: str | None = None) -> RelayReport | None:
    """One pass as a worker's maintenance chore; any error is logged (and None returned).

    The pass closes the database connections it opened (they belong to the calling thread): a
    forking worker must not hand a connection of its own to the work horses it forks.
    """
    try:
        return relay_once(using=using)
    except Exception:
        logger.exception(
            "Outbox: relay pass failed; next pass in %ss", defaults.OUTBOX_RELAY_INTERVAL_SECONDS
        )
        return None
    finally:
        connections.close_all()


def register_relay() -> str:
    """Make every worker of this process relay the outbox (``AppConfig.ready()`` calls this); its name."""
    return register_maintenance(
        relay_for_worker, defaults.OUTBOX_RELAY_INTERVAL_SECONDS, name="rq_signals.outbox.relay"
    )


def has_outbox(alias: str) -> bool:
    """Whether outbox rows can live in database `alias`: the router allows it and the table exists."""
    if alias in _with_table:
        return True
    if not router.allow_migrate_model(alias, OutboxEntry):
        return False
    if OutboxEntry._meta.db_table not in connections[alias].introspection.table_names():
        return False  # not migrated there (yet): looked up again next pass
    _with_table.add(alias)
    return True


_with_table: set[str] = set()


def _relay_database(alias: str, batch_size: int, report: RelayReport) -> None:
    locks_rows = connections[alias].features.has_select_for_update_skip_locked
    after_pk = 0
    while True:
        # With SKIP LOCKED the claim holds its rows until they are deleted; without it (SQLite) no
        # transaction spans the Redis round trip, which would hold the database's one write lock.
        with transaction.atomic(using=alias) if locks_rows else nullcontext():
            rows = OutboxEntry.objects.using(alias).filter(pk__gt=after_pk).order_by("pk")
            if locks_rows:
                rows = rows.select_for_update(skip_locked=True)
            claimed = list(rows[:batch_size])
            if not claimed:
                return
            after_pk = claimed[-1].pk
            jobs, unusable = _decode(claimed)
            stored_at = {row.job_id: row.created_at.timestamp() for row in claimed}
            sent = enqueue_once(jobs, committed_at=stored_at)
            unsent = {row.pk: sent.failed[row.job_id] for row in claimed if row.job_id in sent.failed}
            with transaction.atomic(using=alias):
                if unusable or unsent:
                    _keep(alias, {**unusable, **unsent}, report)
                discard(sent.done, using=alias)
        report.enqueued += sent.enqueued
        report.already_there += sent.already_there
        if sent.failed and not sent.done:
            return  # Redis does not answer: the later rows would wait for it too, one timeout each


def _decode(rows: list[OutboxEntry]) -> tuple[list[OutboxJob], dict[int, str]]:
    """The rows' jobs, and why the others cannot be sent (by row pk): bad JSON, queue not configured."""
    jobs: list[OutboxJob] = []
    unusable: dict[int, str] = {}
    for row in rows:
        try:
            job = OutboxJob.from_json(row.data)
        except (ValueError, KeyError, TypeError) as exc:
            unusable[row.pk] = f"Job {row.job_id}: outbox row {row.pk} is not a job ({describe_error(exc)})"
            continue
        if job.queue not in conf.queues:
            unusable[row.pk] = f"Job {job.job_id}: queue {job.queue!r} is not in RQ_QUEUES"
            continue
        jobs.append(job)
    return jobs, unusable


def _keep(alias: str, reasons: dict[int, str], report: RelayReport) -> None:
    """Leave rows for a later pass: count the attempt, record why, report it."""
    for reason in sorted(set(reasons.values())):
        pks = [pk for pk, text in reasons.items() if text == reason]
        OutboxEntry.objects.using(alias).filter(pk__in=pks).update(
            attempts=F("attempts") + 1, last_error=reason
        )
    report.errors[alias] = "; ".join(sorted(set(reasons.values()))[:3])
