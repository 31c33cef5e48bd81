"""The retry policy as a user configures it: exact delays, jitter bounds, filters, JSON round trip."""

from __future__ import annotations

import json
import socket

import pytest

from worker import Backoff


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


@pytest.mark.parametrize(("rng", "expected"), [(lower, 0.0), (upper, 4.0)])
def test_full_jitter_draws_between_zero_and_the_delay(rng, expected):
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
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="maxretries"):
        Backoff.from_dict({"maxretries": 3})
