"""The retry policy: how many times, how long to wait, which exceptions.

A `Backoff` is a frozen value object. It travels with its job in `job.meta`
(`POLICY_META_KEY`, as the dict from `to_dict()`), so the worker that runs
the job needs no configuration of its own to honour it. All delays are float
seconds.

Every field is finite and bounded (a policy in `job.meta` is data anyone with write access to Redis
can change): at most `MAX_RETRIES` retries, delays of at most `MAX_DELAY_SECONDS` and never less
than `MIN_DELAY_SECONDS`. Exception filters are matched by name, never imported: see `_matches`.
"""

from __future__ import annotations

import inspect
import math
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, get_args

Jitter = Literal["none", "full", "equal"]
JITTERS: tuple[str, ...] = get_args(Jitter)

#: `job.meta` key holding a job's policy, as `Backoff.to_dict()`.
POLICY_META_KEY = "retry_policy"

ExceptionSpec = type[BaseException] | str
Rng = Callable[[float, float], float]

#: At most this many retries per budget: 1,000 exponential retries outlast any outage worth waiting for.
MAX_RETRIES = 1000
#: No delay (`base`, `max_delay`) longer than a year: past that a datetime overflows sooner or later.
MAX_DELAY_SECONDS = 365 * 24 * 3600.0
#: Every delay is at least this long, so `base=0` cannot spin a job through its retries.
MIN_DELAY_SECONDS = 0.01
#: `factor` at most this: a larger one reaches `max_delay` on the second retry anyway.
MAX_FACTOR = 100.0
#: At most this many exception names in each of `retry_on` and `give_up_on`, each at most this long.
MAX_FILTERS = 64
MAX_FILTER_CHARS = 200


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap.

    The delay before retry number `attempt` (1 for the first retry) is
    `min(max_delay, base * factor ** (attempt - 1))` seconds, then jittered:
    `"none"` keeps it, `"full"` draws uniformly from [0, d], `"equal"` draws
    from [d/2, d]. `retry_on` and `give_up_on` take exception classes or their
    dotted paths; `give_up_on` wins when an exception matches both. A dotted path matches an
    exception whose class (or a base class) has that `module.qualname`, or, for an alias such as
    `socket.timeout`, the class it names in a module already imported: a path is never imported.

    Bounds (checked here, so also by `from_dict`): `0 <= max_retries <= MAX_RETRIES`,
    `0 <= base, max_delay <= MAX_DELAY_SECONDS`, `1 <= factor <= MAX_FACTOR`, all finite; every
    delay is then clamped to `[MIN_DELAY_SECONDS, max_delay]` (or `MIN_DELAY_SECONDS` if larger).
    """

    max_retries: int = 5
    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 600.0
    jitter: Jitter = "full"
    retry_on: tuple[str, ...] = field(default=("builtins.Exception",))
    give_up_on: tuple[str, ...] = field(default=())

    def __init__(
        self,
        max_retries: int = 5,
        base: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 600.0,
        jitter: Jitter = "full",
        retry_on: Iterable[ExceptionSpec] = (Exception,),
        give_up_on: Iterable[ExceptionSpec] = (),
    ) -> None:
        _check(
            isinstance(max_retries, int) and not isinstance(max_retries, bool),
            "max_retries",
            max_retries,
            "a whole number",
        )
        _check(0 <= max_retries <= MAX_RETRIES, "max_retries", max_retries, f"between 0 and {MAX_RETRIES}")
        seconds = f"a finite number of seconds between 0 and {MAX_DELAY_SECONDS:.0f} (a year)"
        _check(_is_number(base) and 0 <= base <= MAX_DELAY_SECONDS, "base", base, seconds)
        _check(
            _is_number(factor) and 1 <= factor <= MAX_FACTOR,
            "factor",
            factor,
            f"a number from 1 to {MAX_FACTOR:g}",
        )
        _check(_is_number(max_delay) and 0 <= max_delay <= MAX_DELAY_SECONDS, "max_delay", max_delay, seconds)
        _check(jitter in JITTERS, "jitter", jitter, f"one of {', '.join(map(repr, JITTERS))}")
        set_ = object.__setattr__
        set_(self, "max_retries", max_retries)
        set_(self, "base", float(base))
        set_(self, "factor", float(factor))
        set_(self, "max_delay", float(max_delay))
        set_(self, "jitter", jitter)
        set_(self, "retry_on", _dotted_paths(retry_on, "retry_on"))
        set_(self, "give_up_on", _dotted_paths(give_up_on, "give_up_on"))

    def delay(self, attempt: int, rng: Rng = random.uniform) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"Backoff.delay: attempt must be >= 1, got {attempt!r}")
        try:
            raw = self.base * self.factor ** (attempt - 1)
        except OverflowError:
            raw = self.max_delay
        capped = min(self.max_delay, raw)
        if self.jitter == "full":
            drawn = rng(0.0, capped)
        elif self.jitter == "equal":
            drawn = capped / 2 + rng(0.0, capped / 2)
        else:
            drawn = capped
        return clamp_delay(drawn, self.max_delay)

    def has_budget(self, retries_done: int) -> bool:
        """Whether a job that has been retried `retries_done` times may be retried again."""
        return retries_done < self.max_retries

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` is one this policy retries (`give_up_on` wins)."""
        if _matches(exc, self.give_up_on):
            return False
        return _matches(exc, self.retry_on)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict that `from_dict` turns back into an equal policy."""
        return {
            "max_retries": self.max_retries,
            "base": self.base,
            "factor": self.factor,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "retry_on": list(self.retry_on),
            "give_up_on": list(self.give_up_on),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backoff:
        """Rebuild a policy from `to_dict()` output; unknown keys raise `ValueError`."""
        if not isinstance(data, dict):
            raise ValueError(f"Backoff.from_dict: expected a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise ValueError(f"Backoff.from_dict: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def clamp_delay(seconds: float, max_delay: float = MAX_DELAY_SECONDS) -> float:
    """`seconds` within `[MIN_DELAY_SECONDS, max(max_delay, MIN_DELAY_SECONDS)]`; NaN gives the minimum."""
    if not seconds >= MIN_DELAY_SECONDS:  # also NaN
        return MIN_DELAY_SECONDS
    return min(seconds, max(max_delay, MIN_DELAY_SECONDS), MAX_DELAY_SECONDS)


_FIELDS = {"max_retries", "base", "factor", "max_delay", "jitter", "retry_on", "give_up_on"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"Backoff: {name} must be {expected}, got {value!r}")


def _dotted_paths(specs: Iterable[ExceptionSpec], name: str) -> tuple[str, ...]:
    if isinstance(specs, (str, type)):
        specs = (specs,)
    if not isinstance(specs, Iterable):
        raise ValueError(f"Backoff: {name} takes exception classes or dotted paths, got {specs!r:.100}")
    paths = []
    for spec in specs:
        if isinstance(spec, type) and issubclass(spec, BaseException):
            paths.append(f"{spec.__module__}.{spec.__qualname__}")
        elif isinstance(spec, str) and "." in spec and len(spec) <= MAX_FILTER_CHARS:
            paths.append(spec)
        else:
            raise ValueError(
                f"Backoff: {name} takes exception classes or dotted paths (at most {MAX_FILTER_CHARS} "
                f"characters), got {spec!r:.100}"
            )
        if len(paths) > MAX_FILTERS:
            raise ValueError(f"Backoff: {name} takes at most {MAX_FILTERS} exceptions")
    return tuple(paths)


def _matches(exc: BaseException, paths: tuple[str, ...]) -> bool:
    names = {f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__}
    if names.intersection(paths):
        return True
    # A path naming an alias (e.g. "socket.timeout") is resolved to its class, in imported modules only.
    for path in paths:
        cls = _imported_exception(path)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _imported_exception(path: str) -> type[BaseException] | None:
    """The exception class `path` names in a module already in `sys.modules`, else None.

    Never imports, and never runs a module's `__getattr__` or a descriptor (`inspect.getattr_static`),
    so a path in a job's meta cannot load or execute code.
    """
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        found: object = module
        for attribute in parts[split:]:
            if not isinstance(found, (ModuleType, type)):
                return None
            found = inspect.getattr_static(found, attribute, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
        return None
    return None
