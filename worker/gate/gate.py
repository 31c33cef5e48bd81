"""Which jobs a worker may run: the functions a job may name, and whether its envelope may be pickled.

rq's worker imports and calls whatever function a job hash names (``os.system`` included) and its
callbacks, and unpickles the hash's data and meta. A `JobGate` says what a worker accepts::

    JobGate(allowed_functions=("shop.jobs.*", "reports.build"), accept_pickle=False)

- `allowed_functions`: exact dotted paths, ``"pkg.module.*"`` (everything under that prefix) or
  ``"*"`` (anything, as rq). The job's function and its success, failure and stopped callbacks must
  all be allowed.
- `accept_pickle`: False, the worker loads jobs with `worker.serializers.JSONSerializer`, which
  refuses pickle without unpickling; True, with `JSONOrPickleSerializer`.
- `allowed_webhook_urls`: where a job's rq webhooks (HTTP requests the worker sends when the job
  ends) may go: ``"*"`` (anywhere, as rq), or URLs whose scheme and host must match and whose path
  must start with the entry's (``"https://hooks.example.com/rq/"``). None (the default): anywhere if
  every function is allowed, nowhere otherwise, so a gate that limits functions also keeps whoever
  can write to Redis from making workers send requests to hosts of their choosing. Behind URL
  entries a webhook is sent without following redirects, and refused if its path has a ``..``
  segment (percent-encoded too), its URL a user or password, or it carries ``Host``, credential or
  framing headers its entry does not name: ``{"url": "https://hooks.example.com/rq/", "headers":
  ["Authorization"]}`` (see `worker.gate.webhooks`).

A worker checks each job against its gate right after dequeueing it, before rq imports the function
(`worker.gate.loading.JobLoading`); a refused job fails at once, without retries or callbacks,
into its queue's failed registry with a `JobRefused` naming the job, what was refused and the setting
that allows it, and the worker goes on. Its job class (`gated_job_class`) imports nothing else the
gate refuses, whoever reads the job again: rq's cleanup of abandoned jobs, which calls their failure
callback, crash recovery, the prefork horse. A worker gets its gate from its ``job_gate`` argument, else
from `install_job_gate` (the Django app installs one in ``AppConfig.ready()``); with neither it runs
every job as rq does, with the serializer it was given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from rq.exceptions import DeserializationError

from worker.exceptions import JobLoadError
from worker.gate import webhooks
from worker.rq_compat import private as rq_private
from worker.serializers import JSONOrPickleSerializer, JSONSerializer, PickleRefused, is_pickle

if TYPE_CHECKING:
    from rq.job import Job
    from rq.serializers import Serializer
    from rq.webhook import Webhook

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.gate.loading's

#: `allowed_functions` entry that allows every function, as rq does.
ANY_FUNCTION: Final = "*"
#: Suffix of an `allowed_functions` entry that allows every function under a dotted prefix.
PREFIX_SUFFIX: Final = ".*"

_lock = threading.Lock()  # guards _installed and _gated_classes


class JobRefused(JobLoadError):
    """A job the worker's `JobGate` refuses to run: a function not allowed, or a pickled envelope."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(job_id, "it")
        self.args = (f"Job {job_id}: refused: {reason}",)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


def is_webhook_url_pattern(entry: object) -> bool:
    """Whether `entry` is a valid `allowed_webhook_urls` entry: ``"*"``, an http(s) URL with a host,
    or ``{"url": <such a URL>, "headers": [<header names sent there>]}``."""
    return entry == ANY_FUNCTION or webhooks.is_target_entry(entry)


def is_function_pattern(entry: object) -> bool:
    """Whether `entry` is a valid `allowed_functions` entry: ``"*"``, a dotted path, or ``"a.b.*"``."""
    if entry == ANY_FUNCTION:
        return True
    if not isinstance(entry, str):
        return False
    path = entry[: -len(PREFIX_SUFFIX)] if entry.endswith(PREFIX_SUFFIX) else entry
    return bool(path) and all(part.isidentifier() for part in path.split("."))


@dataclass(frozen=True)
class JobGate:
    """The functions a worker may call and whether it unpickles; see the module docstring.

    `functions_setting` and `pickle_setting` name, in refusal messages, where to change each.
    """

    allowed_functions: tuple[str, ...]
    accept_pickle: bool = False
    functions_setting: str = "allowed_functions of the worker's JobGate"
    pickle_setting: str = "accept_pickle=True on the worker's JobGate"
    allowed_webhook_urls: tuple[str | Mapping[str, Any] | webhooks.WebhookTarget, ...] | None = None
    webhooks_setting: str = "allowed_webhook_urls of the worker's JobGate"
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _webhook_targets: tuple[webhooks.WebhookTarget, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entries = tuple(self.allowed_functions)
        bad = [entry for entry in entries if not is_function_pattern(entry)]
        if bad or isinstance(self.allowed_functions, str):
            raise ValueError(
                "JobGate: allowed_functions must be dotted paths, 'pkg.module.*' or '*', "
                f"got {bad or entries!r}"
            )
        object.__setattr__(self, "allowed_functions", entries)
        object.__setattr__(self, "_exact", frozenset(entries))
        prefixes = tuple(entry[:-1] for entry in entries if entry.endswith(PREFIX_SUFFIX))
        object.__setattr__(self, "_prefixes", prefixes)
        urls = self.allowed_webhook_urls
        if urls is not None:
            bad_urls = [entry for entry in urls if not is_webhook_url_pattern(entry)]
            if bad_urls or isinstance(urls, str):
                raise ValueError(
                    f"JobGate: allowed_webhook_urls must be http(s) URLs, {{'url': ..., 'headers': [...]}} "
                    f"or '*', got {bad_urls or urls!r}"
                )
            # Mapping entries as WebhookTarget: the gate stays hashable (gated_job_class keys on it).
            url_entries = tuple(
                entry if isinstance(entry, str) else webhooks.WebhookTarget.of(entry) for entry in urls
            )
            object.__setattr__(self, "allowed_webhook_urls", url_entries)
        targets = [webhooks.WebhookTarget.of(entry) for entry in urls or () if entry != ANY_FUNCTION]
        object.__setattr__(self, "_webhook_targets", tuple(targets))

    @property
    def allows_any_function(self) -> bool:
        return ANY_FUNCTION in self._exact

    @property
    def allows_any_webhook(self) -> bool:
        urls = self.allowed_webhook_urls
        return self.allows_any_function if urls is None else ANY_FUNCTION in urls

    @property
    def is_open(self) -> bool:
        """Whether the gate lets every job through, as rq does (any function, pickle, webhook)."""
        return self.allows_any_function and self.accept_pickle and self.allows_any_webhook

    @property
    def serializer(self) -> Serializer:
        """The serializer a worker behind this gate loads and saves jobs with."""
        return JSONOrPickleSerializer if self.accept_pickle else JSONSerializer

    def allows(self, function: str) -> bool:
        """Whether a job may name `function` (a dotted path) as its function or a callback."""
        return self.allows_any_function or function in self._exact or function.startswith(self._prefixes)

    def allows_webhook(self, url: str) -> bool:
        """Whether a job may have the worker send a webhook to `url` (carrying no guarded header)."""
        return self.allows_any_webhook or self._webhook_refusal(url, None) is None

    def webhook_refusal(self, job: Job, webhook: Webhook) -> JobRefused | None:
        """Why the worker must not send `job`'s `webhook` (its URL, its headers), or None."""
        reason = None if self.allows_any_webhook else self._webhook_refusal(webhook.url, webhook.headers)
        return None if reason is None else JobRefused(job.id, reason)

    def refusal(self, job: Job) -> JobRefused | None:
        """Why `job` must not run here, or None. Decodes its data (never unpickling unless accepted),
        never imports its function. Data that cannot be decoded for another reason is not refused
        here (the attempt fails as a `JobLoadError`, as for any worker), but its callbacks and
        webhooks are still checked."""
        if not self.accept_pickle and is_pickle(rq_private.unreadable_meta(job) or b""):
            return self._pickled(job, "meta")
        try:
            function = job.func_name
            instance = job.instance
        except DeserializationError as exc:
            if isinstance(exc.__cause__, PickleRefused):
                return self._pickled(job, "data (function name and arguments)")
            function = instance = None  # undecodable: its callbacks and webhooks are still checked
        if function is not None and instance is not None:
            function = f"{type(instance).__module__}.{type(instance).__qualname__}.{function}"
        callbacks = rq_private.callback_names(job)
        for what, name in (
            ("function", function),
            ("success callback", callbacks["success"]),
            ("failure callback", callbacks["failure"]),
            ("stopped callback", callbacks["stopped"]),
        ):
            if name is not None and not self.allows(name):
                return self._not_allowed(job, what, name)
        for webhook in job.webhooks:
            if (refused := self.webhook_refusal(job, webhook)) is not None:
                return refused
        return None

    def allowed_webhooks(self, job: Job, hooks: Sequence[Webhook]) -> list[Webhook]:
        """`hooks` of `job` that this gate lets the worker send; a refusal is logged."""
        allowed = []
        for webhook in hooks:
            refused = self.webhook_refusal(job, webhook)
            if refused is None:
                allowed.append(webhook)
            else:
                logger.error("%s; not sent", refused)
        return allowed

    def check_import(self, job: Job, what: str, name: str | None) -> None:
        """Raise `JobRefused` unless `job` may have its `what` (function, callback) `name` imported."""
        if name is not None and not self.allows(name):
            raise self._not_allowed(job, what, name)

    def _not_allowed(self, job: Job, what: str, name: str) -> JobRefused:
        return JobRefused(
            job.id,
            f"{what} {name!r} is not allowed on this worker (allowed: {self._allowed_text()}); "
            f"to run it, add it to {self.functions_setting}",
        )

    def _webhook_refusal(self, url: str, headers: Mapping[str, str] | None) -> str | None:
        if any(target.matches(url) for target in self._webhook_targets):
            reason = webhooks.refusal(url, headers, self._webhook_targets)
            return None if reason is None else f"{reason} (see {self.webhooks_setting})"
        allowed = ", ".join(target.url for target in self._webhook_targets) or "none"
        return (
            f"webhook to {url!r} is not allowed on this worker (allowed: {allowed}); "
            f"to send it, add its URL to {self.webhooks_setting}"
        )

    def _pickled(self, job: Job, field_name: str) -> JobRefused:
        return JobRefused(
            job.id,
            f"its {field_name} is pickled and this worker does not accept pickle (unpickling can run "
            f"any code); enqueue it with a JSON serializer, or set {self.pickle_setting}",
        )

    def _allowed_text(self) -> str:
        return ", ".join(self.allowed_functions) or "nothing"


_gated_classes: dict[tuple[type[Job], JobGate], type[Job]] = {}


def gated_job_class(job_class: type[Job], gate: JobGate) -> type[Job]:
    """`job_class`, but its function and callbacks are imported only if `gate` allows them.

    The dequeue check (`JobGate.refusal`) keeps refused jobs from running; this keeps every other
    path that resolves a job's function or callbacks from importing one the gate refuses: rq's
    cleanup of abandoned jobs calls their failure callback, crash recovery too, and a prefork horse
    or a registry reads the job again from Redis. A refused import raises `JobRefused`.
    """
    if getattr(job_class, "job_gate", None) is gate:
        return job_class
    with _lock:
        gated = _gated_classes.get((job_class, gate))
        if gated is None:  # one class per job class and gate: a worker and its queues share it
            gated = _gated_classes[(job_class, gate)] = _gate_class(job_class, gate)
    return gated


def _gate_class(job_class: type[Job], gate: JobGate) -> type[Job]:
    class GatedJob(job_class):  # type: ignore[valid-type,misc]  # a class chosen at run time
        job_gate = gate

        @property
        def func(self) -> Any:
            name = self.func_name
            if name is not None and self.instance is not None:
                name = f"{type(self.instance).__module__}.{type(self.instance).__qualname__}.{name}"
            gate.check_import(self, "function", name)
            return super().func

        @property
        def success_callback(self) -> Any:
            gate.check_import(self, "success callback", rq_private.callback_names(self)["success"])
            return super().success_callback

        @property
        def failure_callback(self) -> Any:
            gate.check_import(self, "failure callback", rq_private.callback_names(self)["failure"])
            return super().failure_callback

        @property
        def stopped_callback(self) -> Any:
            gate.check_import(self, "stopped callback", rq_private.callback_names(self)["stopped"])
            return super().stopped_callback

        def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
            # A refused job never gets here; rq's cleanup of abandoned jobs and crash recovery may.
            if gate.allows_any_webhook:
                super().send_webhooks(status, exc_string=exc_string)
                return
            for webhook in gate.allowed_webhooks(self, getattr(self, "webhooks", [])):
                if webhook.job_status == status:  # as rq's send_webhooks, without following redirects
                    self.log.debug("Job %s: sending %s webhook to %s", self.id, status, webhook.url)
                    webhooks.send(webhook, self, exc_string=exc_string)

    GatedJob.__name__ = GatedJob.__qualname__ = f"Gated{job_class.__name__}"
    return GatedJob


#: What `install_job_gate` takes: a gate, a callable answering one (or None), or None.
GateSource: TypeAlias = "JobGate | Callable[[], JobGate | None] | None"
_installed: GateSource = None


def install_job_gate(gate: GateSource) -> GateSource:
    """The gate of every worker built later in this process without a ``job_gate`` argument.

    A callable is asked each time a worker is built (so a framework can read its settings then);
    None uninstalls: workers run every job, as rq does. Returns what was installed before.
    """
    global _installed
    with _lock:
        previous, _installed = _installed, gate
    return previous


def installed_job_gate() -> JobGate | None:
    """The gate `install_job_gate` installed (a callable's answer now), or None."""
    with _lock:
        installed = _installed
    if installed is None or isinstance(installed, JobGate):
        return installed
    return installed()
