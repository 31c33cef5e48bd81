"""Summaries of repeated measurements: median with min/max and the interquartile range."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median, quartiles and extremes of `n` values (same unit as the values)."""

    n: int
    median: float
    q1: float
    q3: float
    low: float
    high: float

    def format(self, digits: int = 1, scale: float = 1.0) -> str:
        """`median [min–max]` with `digits` decimals, values multiplied by `scale` first."""
        med, low, high = (f"{v * scale:.{digits}f}" for v in (self.median, self.low, self.high))
        if self.n == 1:
            return med
        return f"{med} [{low}–{high}]"


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("summarize: no values")
    ordered = sorted(values)
    if len(ordered) >= 4:
        q1, _, q3 = statistics.quantiles(ordered, n=4)
    else:
        q1, q3 = ordered[0], ordered[-1]
    return Summary(len(ordered), statistics.median(ordered), q1, q3, ordered[0], ordered[-1])


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0–100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile: no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)
