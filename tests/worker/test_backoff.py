"""The retry policy as a user configures it: exact delays, jitter bounds, filters, JSON round trip."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest

from worker import Backoff
from worker.retries.backoff import MAX_DELAY_SECONDS, MAX_RETRIES, MIN_DELAY_SECONDS
from worker.retries.policy import Plan, plan_retry


def upper(low: float, high: float) -> float:
    return high


def lower(low: float, high: float) -> float:
    return low


def test_delays_double_from_base_until_the_cap():
    policy = Backoff(base=0.5, factor=2, max_delay=3, jitter="none")
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_sub_second_delays_are_kept():
    assert Backoff(base=0.05, jitter="none").delay(1) == pytest.approx(0.05)


def test_huge_attempt_numbers_stay_at_the_cap():
    assert Backoff(base=1, factor=10, max_delay=60, jitter="none").delay(10_000) == 60


@pytest.mark.parametrize(("rng", "expected"), [(lower, MIN_DELAY_SECONDS), (upper, 4.0)])
def test_full_jitter_draws_between_the_floor_and_the_delay(rng, expected):
    assert Backoff(base=1, jitter="full").delay(3, rng=rng) == expected


@pytest.mark.parametrize(("rng", "expected"), [(lower, 2.0), (upper, 4.0)])
def test_equal_jitter_draws_between_half_and_the_whole_delay(rng, expected):
    assert Backoff(base=1, jitter="equal").delay(3, rng=rng) == expected


def test_jitter_with_the_real_rng_stays_in_bounds():
    policy = Backoff(base=1, jitter="equal", max_delay=8)
    assert all(4.0 <= policy.delay(4) <= 8.0 for _ in range(500))


def test_budget_counts_retries():
    policy = Backoff(max_retries=2)
    assert [policy.has_budget(done) for done in range(4)] == [True, True, False, False]


def test_filters_take_classes_or_dotted_paths_and_give_up_wins():
    policy = Backoff(retry_on=(OSError, "builtins.ValueError"), give_up_on=["builtins.FileNotFoundError"])
    assert policy.is_retryable(ConnectionError())  # subclass of OSError
    assert policy.is_retryable(ValueError())
    assert not policy.is_retryable(FileNotFoundError())  # an OSError, but give_up_on wins
    assert not policy.is_retryable(KeyError())


def test_a_path_naming_an_alias_matches_its_class():
    assert Backoff(retry_on=["socket.timeout"]).is_retryable(TimeoutError())
    assert socket.timeout is TimeoutError


def test_round_trips_through_json():
    policy = Backoff(
        max_retries=3,
        base=0.25,
        factor=3,
        max_delay=30,
        jitter="equal",
        retry_on=[OSError],
        give_up_on=[PermissionError],
    )
    assert Backoff.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"base": -0.1}, "base"),
        ({"factor": 0.5}, "factor"),
        ({"max_delay": -1}, "max_delay"),
        ({"jitter": "fancy"}, "jitter"),
        ({"retry_on": [42]}, "retry_on"),
        ({"give_up_on": ["NotDotted"]}, "give_up_on"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"max_delay": 1e12}, "max_delay"),
        ({"base": 1e12}, "base"),
        ({"base": math.nan}, "base"),
        ({"base": -math.inf}, "base"),
        ({"factor": math.inf}, "factor"),
        ({"factor": 1e6}, "factor"),
        ({"max_retries": 10**9}, "max_retries"),
        ({"give_up_on": ["x." * 200]}, "give_up_on"),
        ({"retry_on": ["builtins.Exception"] * 100}, "retry_on"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="maxretries"):
        Backoff.from_dict({"maxretries": 3})


@pytest.mark.parametrize("field", ["base", "max_delay"])
@pytest.mark.parametrize("value", [1e12, math.inf, math.nan, -1.0])
def test_from_dict_rejects_delays_no_clock_can_hold_naming_the_field(field, value):
    # A policy read back from a job's meta is checked as the constructor checks it
    data = {**Backoff().to_dict(), field: value}
    with pytest.raises(ValueError, match=f"{field} must be a finite number of seconds"):
        Backoff.from_dict(data)


def test_the_largest_policy_allowed_keeps_its_delays_within_a_year():
    policy = Backoff(max_retries=MAX_RETRIES, base=MAX_DELAY_SECONDS, factor=100, max_delay=MAX_DELAY_SECONDS)
    assert policy.delay(MAX_RETRIES, rng=upper) == MAX_DELAY_SECONDS


@pytest.mark.parametrize("jitter", ["none", "full", "equal"])
def test_a_zero_base_still_waits_the_minimum_delay(jitter):
    # base=0 must not let a job spin through its retries
    assert Backoff(base=0, jitter=jitter).delay(1, rng=lower) == MIN_DELAY_SECONDS


def test_filter_paths_are_matched_by_name_and_never_imported():
    # Given a policy naming modules whose import runs code (`this` prints, venv.__main__ exits)
    code = """
import sys
from worker import Backoff
policy = Backoff(give_up_on=["this.x", "venv.__main__.x"], retry_on=["this.y", "builtins.LookupError"])
print(policy.is_retryable(KeyError()), policy.is_retryable(ValueError()))
print("this" in sys.modules, "venv" in sys.modules)
"""
    # When a process with neither imported asks it about exceptions
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    # Then it answers by the exceptions' class names, importing neither module
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True False", "False False"]
    assert "Beautiful" not in done.stdout + done.stderr


def test_a_class_matches_by_its_dotted_name_or_through_an_imported_module():
    from json import JSONDecodeError

    assert Backoff(retry_on=["json.decoder.JSONDecodeError"]).is_retryable(JSONDecodeError("x", "", 0))
    assert Backoff(retry_on=["json.JSONDecodeError"]).is_retryable(JSONDecodeError("x", "", 0))  # re-export
    assert Backoff(retry_on=[JSONDecodeError]).retry_on == ("json.decoder.JSONDecodeError",)
    assert not Backoff(retry_on=["json.nothing.Here"]).is_retryable(JSONDecodeError("x", "", 0))


class ExplodingCheck(type):
    def __instancecheck__(cls, instance: object) -> bool:
        raise RuntimeError("isinstance exploded")


class Booby(Exception, metaclass=ExplodingCheck):
    pass


def test_an_error_while_the_policy_decides_means_no_retries_and_says_why():
    # Given a policy whose filter names (by an alias path) a class whose isinstance check raises
    policy = Backoff(retry_on=[f"{__name__}.Booby"])
    # When the worker asks it about a failure that no name matches
    plan = plan_retry(policy, ValueError("x"), {})
    # Then the job is not retried, and the plan says why (log_outcome logs it with the job id)
    assert plan == Plan(
        "failed",
        None,
        "no retries: its retry policy could not be evaluated (RuntimeError: isinstance exploded)",
    )
