"""The one module that reads `django.conf.settings`: one typed, lazy property per setting.

Every property reads the settings when called, so ``override_settings`` always works. Values are
returned as configured; `rq_signals.checks` reports bad ones (by key) through ``manage.py check``.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings

from rq_signals import defaults
from rq_signals.defaults import FlushMode, MissingPolicy, OutboxMode
from worker.retries.backoff import Backoff

#: The keys `RQ_SIGNALS` may hold; anything else is reported by the `rq_signals.E002` check.
KNOWN_KEYS: Final = frozenset(
    {
        "ACCEPT_PICKLE",
        "ALLOWED_JOB_FUNCTIONS",
        "ALLOWED_WEBHOOK_URLS",
        "DEFAULT_QUEUE",
        "DEFAULT_RETRY",
        "EAGER",
        "FLUSH",
        "MAX_JOB_DATA_BYTES",
        "MAX_JOB_META_BYTES",
        "MAX_PAYLOAD_BYTES",
        "METRICS",
        "METRICS_TOKEN",
        "MISSING_INSTANCE",
        "OUTBOX",
        "UNKNOWN_RECEIVER_GRACE",
    }
)


class Settings:
    """``RQ_SIGNALS`` (ours), plus the parts of django-rq's ``RQ_QUEUES`` and ``RQ`` that we consult."""

    @property
    def accept_pickle(self) -> bool:
        """Whether workers (and our queues) load pickled job data and meta; False: JSON only."""
        value: bool = self.user_settings().get("ACCEPT_PICKLE", defaults.DEFAULT_ACCEPT_PICKLE)
        return value

    @property
    def allowed_job_functions(self) -> tuple[str, ...]:
        """Job functions workers may call besides `rq_signals.jobs.run_receiver`: dotted paths,
        ``"pkg.module.*"``, or ``"*"`` for any (rq's behaviour)."""
        value: tuple[str, ...] = self.user_settings().get(
            "ALLOWED_JOB_FUNCTIONS", defaults.DEFAULT_ALLOWED_JOB_FUNCTIONS
        )
        return value

    @property
    def allowed_webhook_urls(self) -> tuple[str | dict[str, Any], ...] | None:
        """Where jobs' rq webhooks may go: http(s) URL prefixes, ``{"url": ..., "headers": [...]}`` (the
        ``Host`` or credential headers sent there) or ``"*"``; None: anywhere only when every job
        function is allowed."""
        value: tuple[str | dict[str, Any], ...] | None = self.user_settings().get(
            "ALLOWED_WEBHOOK_URLS", defaults.DEFAULT_ALLOWED_WEBHOOK_URLS
        )
        return value

    @property
    def default_queue(self) -> str:
        value: str = self.user_settings().get("DEFAULT_QUEUE", defaults.DEFAULT_QUEUE)
        return value

    @property
    def default_retry(self) -> Backoff | None:
        """The policy of receivers declared with ``retry=None``; ``None`` or ``False`` here: no retries."""
        value: Backoff | None = self.user_settings().get("DEFAULT_RETRY", defaults.DEFAULT_RETRY)
        return value or None

    @property
    def eager(self) -> bool:
        value: bool = self.user_settings().get("EAGER", defaults.DEFAULT_EAGER)
        return value

    @property
    def flush(self) -> FlushMode:
        """Who writes a transaction's jobs to Redis after commit: ``"commit"`` or ``"background"``."""
        value: FlushMode = self.user_settings().get("FLUSH", defaults.DEFAULT_FLUSH)
        return value

    @property
    def max_job_data_bytes(self) -> int:
        """The largest job data (decompressed, in bytes) a worker or a dashboard page loads."""
        value: int = self.user_settings().get("MAX_JOB_DATA_BYTES", defaults.DEFAULT_MAX_JOB_DATA_BYTES)
        return value

    @property
    def max_job_meta_bytes(self) -> int:
        """The largest job meta (as stored, in bytes) a worker or a dashboard page loads."""
        value: int = self.user_settings().get("MAX_JOB_META_BYTES", defaults.DEFAULT_MAX_JOB_META_BYTES)
        return value

    @property
    def max_payload_bytes(self) -> int:
        """The largest payload (bytes of JSON) a send may enqueue; a larger one is a SerializationError."""
        value: int = self.user_settings().get("MAX_PAYLOAD_BYTES", defaults.DEFAULT_MAX_PAYLOAD_BYTES)
        return value

    @property
    def metrics(self) -> bool:
        """Whether workers built in this process count each receiver's attempts in Redis."""
        value: bool = self.user_settings().get("METRICS", defaults.DEFAULT_METRICS)
        return value

    @property
    def metrics_token(self) -> str | None:
        """The bearer token that may read the metrics page besides staff users; None: staff only."""
        value: str | None = self.user_settings().get("METRICS_TOKEN", defaults.DEFAULT_METRICS_TOKEN)
        return value

    @property
    def missing_instance(self) -> MissingPolicy:
        value: MissingPolicy = self.user_settings().get("MISSING_INSTANCE", defaults.DEFAULT_MISSING_INSTANCE)
        return value

    @property
    def outbox(self) -> OutboxMode:
        """When jobs go through the database outbox: ``"on_failure"`` of Redis, ``"always"``, ``"off"``."""
        value: OutboxMode = self.user_settings().get("OUTBOX", defaults.DEFAULT_OUTBOX)
        return value

    @property
    def unknown_receiver_grace(self) -> float:
        """Float seconds after a job's creation during which an unknown receiver is retried, not failed."""
        value: float = self.user_settings().get(
            "UNKNOWN_RECEIVER_GRACE", defaults.DEFAULT_UNKNOWN_RECEIVER_GRACE
        )
        return value

    @property
    def queues(self) -> dict[str, dict[str, Any]]:
        """django-rq's ``RQ_QUEUES``: queue name to its connection and options."""
        value: dict[str, dict[str, Any]] = getattr(settings, "RQ_QUEUES", {})
        return value

    @property
    def worker_class(self) -> str | None:
        """django-rq's ``RQ["WORKER_CLASS"]`` (a dotted path or a class), None when unset."""
        value: str | None = getattr(settings, "RQ", {}).get("WORKER_CLASS")
        return value

    def user_settings(self) -> dict[str, Any]:
        """``RQ_SIGNALS`` as configured; an empty dict when unset or not a dict (a check reports that)."""
        value = getattr(settings, "RQ_SIGNALS", {})
        return value if isinstance(value, dict) else {}

    def raw_user_settings(self) -> object:
        """``RQ_SIGNALS`` exactly as configured, for the checks."""
        return getattr(settings, "RQ_SIGNALS", {})


#: The settings object; import it as ``from rq_signals.conf import conf``.
conf: Final = Settings()
