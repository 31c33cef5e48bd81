"""Default values of the ``RQ_SIGNALS`` setting and other constants, units in their names."""

from __future__ import annotations

from typing import Final, Literal

from worker.gate.defaults import DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_META_BYTES
from worker.retries.backoff import Backoff

MissingPolicy = Literal["skip", "snapshot", "fail"]
OutboxMode = Literal["on_failure", "always", "off"]
FlushMode = Literal["commit", "background"]

#: ``RQ_SIGNALS["ALLOWED_JOB_FUNCTIONS"]``: job functions a worker may call besides `JOB_FUNCTION`
#: (dotted paths, ``"pkg.module.*"``, or ``"*"`` for any function, as rq); none by default.
DEFAULT_ALLOWED_JOB_FUNCTIONS: Final[tuple[str, ...]] = ()
#: ``RQ_SIGNALS["ALLOWED_WEBHOOK_URLS"]``: where jobs' rq webhooks may go (http(s) URL prefixes, or
#: ``"*"``); None: anywhere only if ALLOWED_JOB_FUNCTIONS allows any function, else nowhere.
DEFAULT_ALLOWED_WEBHOOK_URLS: Final[tuple[str, ...] | None] = None
#: ``RQ_SIGNALS["ACCEPT_PICKLE"]``: whether workers load pickled job data and meta (rq's default
#: serializer); by default job envelopes are JSON only and a pickled one is refused, never unpickled.
DEFAULT_ACCEPT_PICKLE: Final = False
#: ``RQ_SIGNALS["DEFAULT_QUEUE"]``: the RQ_QUEUES entry of receivers declared with ``queue=None``.
DEFAULT_QUEUE: Final = "default"
#: ``RQ_SIGNALS["DEFAULT_RETRY"]``: the policy of receivers declared with ``retry=None``.
DEFAULT_RETRY: Final = Backoff(max_retries=5, base=1.0, factor=2.0, max_delay=600.0, jitter="full")
#: ``RQ_SIGNALS["EAGER"]``: run receivers inline (after commit) instead of enqueueing them.
DEFAULT_EAGER: Final = False
#: ``RQ_SIGNALS["UNKNOWN_RECEIVER_GRACE"]``: float seconds after a job's creation during which a
#: worker that does not know its receiver retries it (its code may be older: a rolling deploy).
DEFAULT_UNKNOWN_RECEIVER_GRACE: Final = 600.0
#: ``RQ_SIGNALS["METRICS"]``: whether workers count each receiver's attempts in Redis (`worker.metrics`).
DEFAULT_METRICS: Final = False
#: ``RQ_SIGNALS["METRICS_TOKEN"]``: a bearer token that may read the metrics page; None: staff only.
DEFAULT_METRICS_TOKEN: Final[str | None] = None
#: ``RQ_SIGNALS["MAX_PAYLOAD_BYTES"]``: the largest encoded payload a send may enqueue, in bytes of JSON.
DEFAULT_MAX_PAYLOAD_BYTES: Final = 1024 * 1024
#: ``RQ_SIGNALS["MAX_JOB_DATA_BYTES"]``: the largest job data, decompressed, a worker or a dashboard
#: page loads; larger data (a zlib bomb) is never decompressed past it and the job fails at once.
DEFAULT_MAX_JOB_DATA_BYTES: Final = DEFAULT_MAX_DATA_BYTES
#: ``RQ_SIGNALS["MAX_JOB_META_BYTES"]``: the largest job meta, as stored, a worker or page loads.
DEFAULT_MAX_JOB_META_BYTES: Final = DEFAULT_MAX_META_BYTES
#: ``RQ_SIGNALS["MISSING_INSTANCE"]``: what a job does when an instance it refers to is gone.
DEFAULT_MISSING_INSTANCE: Final[MissingPolicy] = "skip"

MISSING_INSTANCE_POLICIES: Final[tuple[MissingPolicy, ...]] = ("skip", "snapshot", "fail")

#: The module `AppConfig.ready()` imports from every installed app, so workers know every receiver.
RECEIVERS_MODULE: Final = "receivers"
#: The job function every async receiver's job names.
JOB_FUNCTION: Final = "rq_signals.jobs.run_receiver"
#: Longest job description shown in the django-rq admin, in characters.
DESCRIPTION_CHARS: Final = 200

#: ``RQ_SIGNALS["OUTBOX"]``: when jobs go through the database outbox (see `rq_signals.outbox`).
DEFAULT_OUTBOX: Final[OutboxMode] = "on_failure"
OUTBOX_MODES: Final[tuple[OutboxMode, ...]] = ("on_failure", "always", "off")
#: Seconds between two relay passes of a worker (and of ``rqsignals relay`` without ``--interval``).
OUTBOX_RELAY_INTERVAL_SECONDS: Final = 5.0
#: Outbox rows a relay claims (and a store or delete writes) per statement.
OUTBOX_BATCH_SIZE: Final = 100
#: Seconds the ``rq_signals:relayed:<job_id>`` marker of a relayed job lives: no second relay within it.
OUTBOX_MARKER_TTL_SECONDS: Final = 7 * 24 * 3600
#: WATCH/MULTI rounds a relay tries on one batch while other relays touch its jobs.
OUTBOX_WATCH_ATTEMPTS: Final = 5

#: ``RQ_SIGNALS["FLUSH"]``: who writes a transaction's jobs to Redis after commit: the committing
#: thread (``"commit"``: the request waits for Redis) or a writer thread (``"background"``).
DEFAULT_FLUSH: Final[FlushMode] = "commit"
FLUSH_MODES: Final[tuple[FlushMode, ...]] = ("commit", "background")
