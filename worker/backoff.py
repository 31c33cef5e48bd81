"""The retry policy: how many times, how long to wait, which exceptions.

A `Backoff` is a frozen value object. It travels with its job in `job.meta`
(`POLICY_META_KEY`, as the dict from `to_dict()`), so the worker that runs
the job needs no configuration of its own to honour it. All delays are float
seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from rq.utils import import_attribute

Jitter = Literal["none", "full", "equal"]
JITTERS: tuple[str, ...] = get_args(Jitter)

#: `job.meta` key holding a job's policy, as `Backoff.to_dict()`.
POLICY_META_KEY = "retry_policy"

ExceptionSpec = type[BaseException] | str
Rng = Callable[[float, float], float]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap.

    The delay before retry number `attempt` (1 for the first retry) is
    `min(max_delay, base * factor ** (attempt - 1))` seconds, then jittered:
    `"none"` keeps it, `"full"` draws uniformly from [0, d], `"equal"` draws
    from [d/2, d]. `retry_on` and `give_up_on` take exception classes or their
    dotted paths; `give_up_on` wins when an exception matches both.
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
        _check(max_retries >= 0, "max_retries", max_retries, ">= 0")
        _check(_is_number(base) and base >= 0, "base", base, "a number of seconds >= 0")
        _check(_is_number(factor) and factor >= 1, "factor", factor, "a number >= 1")
        _check(_is_number(max_delay) and max_delay >= 0, "max_delay", max_delay, "a number of seconds >= 0")
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
            return rng(0.0, capped)
        if self.jitter == "equal":
            return capped / 2 + rng(0.0, capped / 2)
        return capped

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


_FIELDS = {"max_retries", "base", "factor", "max_delay", "jitter", "retry_on", "give_up_on"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"Backoff: {name} must be {expected}, got {value!r}")


def _dotted_paths(specs: Iterable[ExceptionSpec], name: str) -> tuple[str, ...]:
    if isinstance(specs, (str, type)):
        specs = (specs,)
    paths = []
    for spec in specs:
        if isinstance(spec, type) and issubclass(spec, BaseException):
            paths.append(f"{spec.__module__}.{spec.__qualname__}")
        elif isinstance(spec, str) and "." in spec:
            paths.append(spec)
        else:
            raise ValueError(f"Backoff: {name} takes exception classes or dotted paths, got {spec!r}")
    return tuple(paths)


def _matches(exc: BaseException, paths: tuple[str, ...]) -> bool:
    names = {f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__}
    if names.intersection(paths):
        return True
    # A path naming an alias (e.g. "socket.timeout") is resolved to its class.
    for path in paths:
        cls = _load_exception(path)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _load_exception(path: str) -> type[BaseException] | None:
    try:
        cls = import_attribute(path)
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None
