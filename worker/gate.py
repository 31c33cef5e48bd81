"""Which jobs a worker may run: the functions a job may name, and whether its envelope may be pickled.

rq's worker imports and calls whatever function a job hash names (``os.system`` included) and its
callbacks, and unpickles the hash's data and meta. A `JobGate` says what a worker accepts::

    JobGate(allowed_functions=("shop.jobs.*", "reports.build"), accept_pickle=False)

- `allowed_functions`: exact dotted paths, ``"pkg.module.*"`` (everything under that prefix) or
  ``"*"`` (anything, as rq). The job's function and its success, failure and stopped callbacks must
  all be allowed.
- `accept_pickle`: False, the worker loads jobs with `worker.serializers.JSONSerializer`, which
  refuses pickle without unpickling; True, with `JSONOrPickleSerializer`.

A worker checks each job against its gate right after dequeueing it, before rq imports the function
(`worker.loading.UnreadableJobMixin`); a refused job fails at once, without retries or callbacks,
into its queue's failed registry with a `JobRefused` naming the job, what was refused and the setting
that allows it, and the worker goes on. Its job class (`gated_job_class`) imports nothing else the
gate refuses, whoever reads the job again: rq's cleanup of abandoned jobs, which calls their failure
callback, crash recovery, the prefork horse. A worker gets its gate from its ``job_gate`` argument, else
from `install_job_gate` (the Django app installs one in ``AppConfig.ready()``); with neither it runs
every job as rq does, with the serializer it was given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from rq.exceptions import DeserializationError

from worker.exceptions import JobLoadError
from worker.serializers import JSONOrPickleSerializer, JSONSerializer, PickleRefused, is_pickle

if TYPE_CHECKING:
    from rq.job import Job
    from rq.serializers import Serializer

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
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

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

    @property
    def allows_any_function(self) -> bool:
        return ANY_FUNCTION in self._exact

    @property
    def is_open(self) -> bool:
        """Whether the gate lets every job through, as rq does (any function, pickle accepted)."""
        return self.allows_any_function and self.accept_pickle

    @property
    def serializer(self) -> Serializer:
        """The serializer a worker behind this gate loads and saves jobs with."""
        return JSONOrPickleSerializer if self.accept_pickle else JSONSerializer

    def allows(self, function: str) -> bool:
        """Whether a job may name `function` (a dotted path) as its function or a callback."""
        return self.allows_any_function or function in self._exact or function.startswith(self._prefixes)

    def refusal(self, job: Job) -> JobRefused | None:
        """Why `job` must not run here, or None. Decodes its data (never unpickling unless accepted),
        never imports its function. Data that cannot be decoded for another reason is not refused
        here: the attempt fails as a `JobLoadError`, as for any worker."""
        if not self.accept_pickle and is_pickle(job._unreadable_meta or b""):
            return self._pickled(job, "meta")
        try:
            function = job.func_name
            instance = job.instance
        except DeserializationError as exc:
            if isinstance(exc.__cause__, PickleRefused):
                return self._pickled(job, "data (function name and arguments)")
            return None
        if function is not None and instance is not None:
            function = f"{type(instance).__module__}.{type(instance).__qualname__}.{function}"
        for what, name in (
            ("function", function),
            ("success callback", job._success_callback_name),
            ("failure callback", job._failure_callback_name),
            ("stopped callback", job._stopped_callback_name),
        ):
            if name is not None and not self.allows(name):
                return self._not_allowed(job, what, name)
        return None

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
            gate.check_import(self, "success callback", self._success_callback_name)
            return super().success_callback

        @property
        def failure_callback(self) -> Any:
            gate.check_import(self, "failure callback", self._failure_callback_name)
            return super().failure_callback

        @property
        def stopped_callback(self) -> Any:
            gate.check_import(self, "stopped callback", self._stopped_callback_name)
            return super().stopped_callback

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
