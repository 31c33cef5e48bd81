"""System checks, run by ``manage.py check`` and before ``runserver``/``rqworker``.

- ``rq_signals.E001``: a receiver's queue (or ``RQ_SIGNALS["DEFAULT_QUEUE"]``) is not in RQ_QUEUES.
- ``rq_signals.E002``: ``RQ_SIGNALS`` is not a dict, or holds a key we do not know.
- ``rq_signals.E003``: a ``RQ_SIGNALS`` value has the wrong type or is out of range.
- ``rq_signals.E004``: a receiver's retry policy is out of the bounds a worker accepts (see `Backoff`).
- ``rq_signals.E005``: ``RQ_SIGNALS["DEFAULT_RETRY"]`` is out of the bounds a worker accepts.
- ``rq_signals.W001``: django-rq's ``RQ["WORKER_CLASS"]`` does not honour retry policies.
- ``rq_signals.W002``: a queue we write to has no JSON ``SERIALIZER`` in RQ_QUEUES, so django-rq's
  dashboard (which reads jobs with it) cannot show our jobs, and with pickle unpickles forged ones.
- ``rq_signals.W003``: ``RQ_SIGNALS["MAX_JOB_DATA_BYTES"]`` is not above ``["MAX_PAYLOAD_BYTES"]``, so
  workers refuse jobs whose payload a send accepted (the job's data is the payload and its envelope).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string
from rq.serializers import resolve_serializer

from rq_signals import defaults, registration
from rq_signals.conf import KNOWN_KEYS, conf
from worker.core import WorkerCore
from worker.gate.gate import is_function_pattern, is_webhook_url_pattern
from worker.retries.backoff import Backoff

_RETRY_WORKERS = ("worker.RetryWorker", "worker.SimpleRetryWorker", "worker.PreforkRetryWorker")


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    raw = conf.raw_user_settings()
    if not isinstance(raw, dict):
        return [Error(f"RQ_SIGNALS must be a dict, got {type(raw).__name__}.", id="rq_signals.E002")]
    messages: list[CheckMessage] = []
    for key in sorted(set(raw) - KNOWN_KEYS, key=str):
        messages.append(
            Error(
                f"RQ_SIGNALS[{key!r}] is not a setting of rq_signals.",
                hint=f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.",
                id="rq_signals.E002",
            )
        )
    for key, (is_valid, expected) in _VALUE_RULES.items():
        if key in raw and not is_valid(raw[key]):
            messages.append(
                Error(f'RQ_SIGNALS["{key}"] must be {expected}, got {raw[key]!r}.', id="rq_signals.E003")
            )
    return messages


@register(Tags.compatibility)
def check_receiver_queues(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    configured = conf.queues
    messages: list[CheckMessage] = []
    for receiver in registration.registered():
        queue = receiver.queue or conf.default_queue
        if not isinstance(queue, str) or queue in configured:
            continue  # a non-str default queue is E003's to report
        source = "" if receiver.queue else ' (from RQ_SIGNALS["DEFAULT_QUEUE"])'
        messages.append(
            Error(
                f"receiver {receiver.receiver_id} names queue {queue!r}{source}, which is not in RQ_QUEUES.",
                hint=f"RQ_QUEUES has: {', '.join(sorted(configured)) or 'no queues'}.",
                obj=receiver.receiver_id,
                id="rq_signals.E001",
            )
        )
    return messages


@register(Tags.compatibility)
def check_retry_policies(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """A policy travels in each job's meta and the worker reads it back with `Backoff.from_dict`,
    which rejects what is out of bounds: one that `Backoff()` would not build (altered after it, or
    from an older version) would fail every job it is given at its first failure."""
    messages: list[CheckMessage] = []
    for receiver in registration.registered():
        problem = _policy_problem(receiver.retry)
        if problem is not None:
            messages.append(
                Error(
                    f"receiver {receiver.receiver_id} has a retry policy a worker would reject: {problem}",
                    hint="Build it with rq_signals.Backoff(...) within the bounds its docstring gives.",
                    obj=receiver.receiver_id,
                    id="rq_signals.E004",
                )
            )
    problem = _policy_problem(conf.user_settings().get("DEFAULT_RETRY"))
    if problem is not None:
        messages.append(
            Error(
                f'RQ_SIGNALS["DEFAULT_RETRY"] is a retry policy a worker would reject: {problem}',
                hint="Build it with rq_signals.Backoff(...) within the bounds its docstring gives.",
                id="rq_signals.E005",
            )
        )
    return messages


def _policy_problem(policy: Any) -> str | None:
    if not isinstance(policy, Backoff):
        return None  # None/False mean the default/no retries; another type is E003's to report
    try:
        Backoff.from_dict(policy.to_dict())
    except Exception as exc:
        return str(exc)
    return None


@register(Tags.compatibility)
def check_worker_class(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    configured = conf.worker_class
    try:
        worker_class = import_string(configured) if isinstance(configured, str) else configured
    except ImportError:
        worker_class = None
    if isinstance(worker_class, type) and issubclass(worker_class, WorkerCore):
        return []
    others = ", ".join(f'"{path}"' for path in _RETRY_WORKERS[1:])
    return [
        Warning(
            f'RQ["WORKER_CLASS"] is {configured!r}, which ignores the retry policies of async receivers '
            "(failed jobs are not retried).",
            hint=f'Set RQ = {{"WORKER_CLASS": "{_RETRY_WORKERS[0]}"}} (or {others}), or a subclass of one.',
            id="rq_signals.W001",
        )
    ]


@register(Tags.compatibility)
def check_dashboard_serializers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    configured = conf.queues
    used = {receiver.queue or conf.default_queue for receiver in registration.registered()}
    used.add(conf.default_queue)
    wanted = "JSONOrPickleSerializer" if conf.accept_pickle is True else "JSONSerializer"
    messages: list[CheckMessage] = []
    for name in sorted(queue for queue in used if isinstance(queue, str) and queue in configured):
        serializer = configured[name].get("SERIALIZER") if isinstance(configured[name], dict) else None
        if _reads_json(serializer):
            continue
        has = "no SERIALIZER (rq's pickle)" if serializer is None else f"SERIALIZER {serializer!r}"
        messages.append(
            Warning(
                f"RQ_QUEUES[{name!r}] has {has}, which cannot read the JSON jobs rq_signals writes "
                "there, so django-rq's dashboard cannot show them (and, with pickle, it unpickles "
                "whatever job is written there, which can run code in the web process).",
                hint=f'Add "SERIALIZER": "worker.serializers.{wanted}" to RQ_QUEUES[{name!r}].',
                id="rq_signals.W002",
            )
        )
    return messages


@register(Tags.compatibility)
def check_job_limits(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    data, payload = conf.max_job_data_bytes, conf.max_payload_bytes
    if not (_is_positive_int(data) and _is_positive_int(payload)) or data > payload:
        return []  # a bad value is E003's to report
    return [
        Warning(
            f'RQ_SIGNALS["MAX_JOB_DATA_BYTES"] is {data}, not above RQ_SIGNALS["MAX_PAYLOAD_BYTES"] '
            f"({payload}), so workers refuse the jobs of the largest payloads a send accepts "
            "(a job's data is its payload and an envelope).",
            hint=f'Set RQ_SIGNALS["MAX_JOB_DATA_BYTES"] to at least {2 * payload}, '
            "or lower MAX_PAYLOAD_BYTES.",
            id="rq_signals.W003",
        )
    ]


def _reads_json(serializer: Any) -> bool:
    """Whether `serializer` (as RQ_QUEUES gives it: a dotted path, a class or None) loads a JSON job."""
    try:
        return bool(resolve_serializer(serializer).loads(b'{"json": [1]}') == {"json": [1]})
    except Exception:  # pickle on JSON, an unimportable path, anything else: not JSON
        return False


def _is_queue_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_retry(value: Any) -> bool:
    return value is None or value is False or isinstance(value, Backoff)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_token(value: Any) -> bool:
    return value is None or (isinstance(value, str) and len(value) >= 16)


def _is_missing_policy(value: Any) -> bool:
    return value in defaults.MISSING_INSTANCE_POLICIES


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_outbox_mode(value: Any) -> bool:
    return value in defaults.OUTBOX_MODES


def _is_function_patterns(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(is_function_pattern(entry) for entry in value)


def _is_webhook_url_patterns(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, (list, tuple)) and all(is_webhook_url_pattern(entry) for entry in value)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


def _is_flush_mode(value: Any) -> bool:
    return value in defaults.FLUSH_MODES


_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ACCEPT_PICKLE": (_is_bool, "True or False"),
    "ALLOWED_JOB_FUNCTIONS": (
        _is_function_patterns,
        'a list of dotted function paths, "pkg.module.*" prefixes, or "*" for any function',
    ),
    "ALLOWED_WEBHOOK_URLS": (
        _is_webhook_url_patterns,
        'None, or a list of http(s) URL prefixes ("https://hooks.example.com/rq/"), of {"url": ..., '
        '"headers": ["Authorization"]} (an entry and the Host or credential headers sent there), '
        'or "*" for any URL',
    ),
    "DEFAULT_QUEUE": (_is_queue_name, "the name of an RQ_QUEUES entry"),
    "DEFAULT_RETRY": (_is_retry, "a rq_signals.Backoff, or None/False for no retries"),
    "EAGER": (_is_bool, "True or False"),
    "METRICS": (_is_bool, "True or False"),
    "METRICS_TOKEN": (_is_token, "None or a string of at least 16 characters"),
    "FLUSH": (_is_flush_mode, " or ".join(map(repr, defaults.FLUSH_MODES))),
    "MAX_JOB_DATA_BYTES": (_is_positive_int, "a whole number of bytes > 0"),
    "MAX_JOB_META_BYTES": (_is_positive_int, "a whole number of bytes > 0"),
    "MAX_PAYLOAD_BYTES": (_is_positive_int, "a whole number of bytes > 0"),
    "MISSING_INSTANCE": (_is_missing_policy, " or ".join(map(repr, defaults.MISSING_INSTANCE_POLICIES))),
    "OUTBOX": (_is_outbox_mode, " or ".join(map(repr, defaults.OUTBOX_MODES))),
    "UNKNOWN_RECEIVER_GRACE": (_is_seconds, "a number of seconds >= 0 (0: no grace)"),
}
