"""From a signal to a job: encode at send time, wait for commit, push a transaction's jobs in one request.

Each send registers one ``on_commit`` callback on the sending database alias, so Django's savepoint
bookkeeping drops the callbacks of rolled-back savepoints (and of a rolled-back transaction). The
callbacks of one transaction share a `_Batch`: each one that runs adds its job to the batch, and
the last of them still pending flushes the batch: one request per Redis server
(`rq_signals.jobwriter.write_group`: a script writing a queue's jobs; a MULTI/EXEC around several),
so one round trip per transaction in the usual one-server setup. The payload is encoded to JSON
text once, at send; the flush embeds that text in the job's ``data``.

"Still pending" is a `weakref.WeakSet` of the callbacks Django holds: a callback Django discards on
a savepoint rollback is freed at once (reference counting, as on CPython), leaving the set. With
``RQ_SIGNALS["EAGER"]`` the flush runs each job inline instead, through the same JSON round trip.

Jobs Redis does not take go to the database outbox (`rq_signals.outbox`), and with
``RQ_SIGNALS["OUTBOX"] = "always"`` every after-commit job is written there inside the transaction.
With ``RQ_SIGNALS["FLUSH"] = "background"`` a committed transaction's jobs (and those of a send in
autocommit, whose write is already committed) are handed to the writer thread of `rq_signals.flusher`
instead, which writes them with `rq_signals.jobwriter.write_group` too; sends with
``on_commit=False`` and ``EAGER`` are unchanged.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.transaction import TransactionManagementError
from redis.exceptions import RedisError

from rq_signals import defaults, flusher, jobs, jobwriter, outbox
from rq_signals.conf import conf
from rq_signals.exceptions import SerializationError
from rq_signals.jobspec import JobSpec, list_receivers, payload_text
from rq_signals.payload import encode_arguments
from rq_signals.registration import AsyncReceiver, SignalRef
from worker.retries.backoff import POLICY_META_KEY, Backoff

logger = logging.getLogger(__name__)


def check_size(text: str, *, signal_name: str, receiver_id: str) -> None:
    """Refuse, in the sender, a payload (`payload_text`) larger than ``RQ_SIGNALS["MAX_PAYLOAD_BYTES"]``."""
    limit = conf.max_payload_bytes
    size = len(text)  # ASCII: one byte per character
    if size > limit:
        raise SerializationError(
            f"{signal_name} receiver {receiver_id} got a payload of {size} bytes, over "
            f'RQ_SIGNALS["MAX_PAYLOAD_BYTES"] = {limit}; send pks or a smaller value instead of large data.'
        )


def send(registration: AsyncReceiver, ref: SignalRef, sender: Any, kwargs: dict[str, Any]) -> None:
    """Encode one receiver call now (errors surface in the sender), enqueue it now or after commit."""
    arguments = {"sender": sender, **kwargs}
    if isinstance(arguments.get("origin"), models.QuerySet):
        # queryset.delete() sends the QuerySet as pre/post_delete's `origin`; a job carries its model.
        arguments["origin"] = arguments["origin"].model
    payload = encode_arguments(arguments, signal_name=ref.name, receiver_path=registration.receiver_id)
    text = payload_text(payload)
    check_size(text, signal_name=ref.name, receiver_id=registration.receiver_id)
    spec = JobSpec(
        queue=registration.queue or conf.default_queue,
        receiver_id=registration.receiver_id,
        signal_path=ref.path,
        payload_json=text,
        description=describe(ref, sender, kwargs, registration.receiver_id),
        meta=_meta(registration),
        timeout=registration.timeout,
    )
    alias = database_alias(kwargs)
    connection = connections[alias]
    if not registration.on_commit or not connection.in_atomic_block:
        if registration.on_commit and _in_manual_transaction(connection):
            # As transaction.on_commit(): without atomic() there is no commit we could wait for.
            raise TransactionManagementError(
                f"{ref.name} receiver {registration.receiver_id} waits for a commit, but database "
                f"{alias!r} is in manual transaction management (autocommit off, no atomic block); "
                "send inside transaction.atomic(), or declare the receiver with on_commit=False."
            )
        if not (registration.on_commit and _hand_to_writer(alias, [spec], [])):
            dispatch([spec], using=alias)
        return
    batch = _batches.get(connection)
    if batch is None:
        batch = _batches[connection] = _Batch(alias)
    if conf.outbox == "always" and not conf.eager:
        outbox.store([spec], using=alias)  # in the transaction: it commits or rolls back with the rows
        batch.outboxed.add(spec.job_id)
    callback = _OnCommit(batch, spec)
    batch.pending.add(callback)
    connection.on_commit(callback)


def _in_manual_transaction(connection: BaseDatabaseWrapper) -> bool:
    """Autocommit off outside atomic(); read without connecting (get_autocommit() would connect)."""
    return connection.connection is not None and not connection.autocommit


def _hand_to_writer(
    alias: str, specs: list[JobSpec], outboxed: list[JobSpec], committed_at: float | None = None
) -> bool:
    """Under ``FLUSH="background"`` (not ``EAGER``) hand committed jobs to the writer; False: write here."""
    if conf.flush != "background" or conf.eager:
        return False
    return flusher.submit(flusher.Committed(alias, specs, outboxed, conf.outbox, committed_at or time.time()))


def dispatch(
    specs: list[JobSpec], *, using: str = DEFAULT_DB_ALIAS, committed_at: float | None = None
) -> list[str]:
    """Enqueue `specs` (one pipeline per Redis server), or run them inline under ``EAGER``; ids enqueued.

    Jobs a Redis server does not take go to the outbox of database `using` (unless ``OUTBOX="off"``).
    `committed_at` (`time.time()` seconds): when their transaction committed (None: not sent on commit).
    """
    if not specs:
        return []
    if conf.eager:
        _run_eagerly(specs)
        return []
    job_ids: list[str] = []
    for group in jobwriter.by_connection(specs):
        try:
            job_ids += jobwriter.write_group(group, committed_at=committed_at)
        except (RedisError, OSError) as exc:
            if conf.outbox == "off":
                raise
            outbox.store_unsent(group, using=using, error=exc)
    return job_ids


def database_alias(kwargs: dict[str, Any]) -> str:
    """The alias that sent the signal: the ``using`` argument, else the instance's, else the default."""
    using = kwargs.get("using")
    if isinstance(using, str):
        return using
    instance = kwargs.get("instance")
    if isinstance(instance, models.Model) and instance._state.db:
        return instance._state.db
    return DEFAULT_DB_ALIAS


def describe(ref: SignalRef, sender: Any, kwargs: dict[str, Any], receiver_id: str) -> str:
    """What the django-rq admin shows, e.g. ``post_save testapp.Order pk=42 → shop.receivers.send``."""
    parts = [ref.name]
    if sender is not None:
        parts.append(_label(sender) if ref.name != ref.path else f"sender={_label(sender)}")
    instance = kwargs.get("instance")
    if isinstance(instance, models.Model):
        if not isinstance(sender, type) or not isinstance(instance, sender):
            parts.append(instance._meta.label)
        parts.append(f"pk={instance.pk}")
    action = kwargs.get("action")
    if isinstance(action, str):
        parts.append(action)
    text = " ".join(parts) + f" → {receiver_id}"
    limit = defaults.DESCRIPTION_CHARS
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Batch:
    """The jobs of one database connection's transaction: ready ones, and callbacks still to run."""

    alias: str
    ready: list[JobSpec] = field(default_factory=list)
    pending: weakref.WeakSet[_OnCommit] = field(default_factory=weakref.WeakSet)
    outboxed: set[str] = field(default_factory=set)  # OUTBOX="always": job ids with rows to deliver
    committed_at: float | None = None  # time.time() when its first on_commit callback ran

    def flush(self) -> None:
        specs, self.ready = self.ready, []
        committed_at, self.committed_at = self.committed_at, None
        outboxed, self.outboxed = self.outboxed, set()  # ids of rolled-back sends are forgotten here
        if outboxed:
            delivered = [spec for spec in specs if spec.job_id in outboxed]
            specs = [spec for spec in specs if spec.job_id not in outboxed]
        else:
            delivered = []
        if _hand_to_writer(self.alias, specs, delivered, committed_at):
            return
        try:
            if delivered:
                outbox.deliver(delivered, using=self.alias, committed_at=committed_at)
            dispatch(specs, using=self.alias, committed_at=committed_at)
        except Exception:
            logger.exception(
                "Receivers %s: %d job(s) of a committed transaction could not be enqueued",
                list_receivers(delivered + specs),
                len(delivered) + len(specs),
            )
            raise


_batches: weakref.WeakKeyDictionary[BaseDatabaseWrapper, _Batch] = weakref.WeakKeyDictionary()


class _OnCommit:
    """The on_commit callback of one send; the last one of its batch to run flushes the batch."""

    __slots__ = ("__weakref__", "batch", "spec")

    def __init__(self, batch: _Batch, spec: JobSpec) -> None:
        self.batch = batch
        self.spec = spec

    def __call__(self) -> None:
        if self.batch.committed_at is None:  # Django runs on_commit callbacks right after the commit
            self.batch.committed_at = time.time()
        self.batch.ready.append(self.spec)
        self.batch.pending.discard(self)
        if not self.batch.pending:
            self.batch.flush()


def _meta(registration: AsyncReceiver) -> dict[str, Any]:
    """The job meta of `registration`'s policy; shared by every job of that policy, so never mutated."""
    retry = registration.retry
    return _policy_meta(conf.default_retry if retry is None else _NO_RETRIES if retry is False else retry)


_NO_RETRIES = Backoff(max_retries=0)


@functools.lru_cache(maxsize=256)
def _policy_meta(policy: Backoff | None) -> dict[str, Any]:
    """One ``to_dict()`` per policy (a frozen value), not one per send."""
    return {} if policy is None else {POLICY_META_KEY: policy.to_dict()}


def _label(sender: Any) -> str:
    if isinstance(sender, type) and issubclass(sender, models.Model):
        return sender._meta.label
    if isinstance(sender, type):
        return f"{sender.__module__}.{sender.__qualname__}"
    text = repr(sender)
    return text if len(text) <= 40 else text[:39] + "…"


def _run_eagerly(specs: list[JobSpec]) -> None:
    for spec in specs:
        jobs.call_receiver(spec.receiver_id, spec.signal_path, spec.payload)  # what a worker would get
