"""Outcomes of a compat run: read from pytest's junit XML, compared, and printed as a table."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

Status = str  # "pass", "fail" or "skip"


@dataclass
class Outcome:
    status: Status
    detail: str = ""


@dataclass
class Run:
    """One variant's results, merged over its shards; `seconds` is the slowest shard's wall time."""

    variant: str
    seconds: float = 0.0
    results: dict[str, Outcome] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Outcome per junit test case, keyed "tests.test_worker.TestWorker::test_x"."""
    results: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = f"{case.get('classname')}::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            results[nodeid] = Outcome("fail", text.strip())
        elif skipped is not None:
            results[nodeid] = Outcome("skip", skipped.get("message", ""))
        else:
            results.setdefault(nodeid, Outcome("pass"))
    return results


def module_of(nodeid: str) -> str:
    """ "tests.test_worker.TestWorker::test_x" -> "test_worker"."""
    parts = nodeid.split("::", 1)[0].split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def to_pytest_id(nodeid: str) -> str:
    """junit "tests.test_worker.TestWorker::test_x" -> pytest "tests/test_worker.py::TestWorker::test_x"."""
    dotted, name = nodeid.split("::", 1)
    parts = dotted.split(".")
    return "/".join(parts[:2]) + ".py::" + "::".join([*parts[2:], name])


def counts(results: dict[str, Outcome], module: str | None = None) -> str:
    """ "pass/fail/skip" over one module's tests, or all of them."""
    statuses = [o.status for n, o in results.items() if module is None or module_of(n) == module]
    return f"{statuses.count('pass')}/{statuses.count('fail')}/{statuses.count('skip')}"


def regressions(baseline: Run, ours: Run) -> list[str]:
    """Tests that pass with rq's classes and fail (or did not run) with ours."""
    missing = Outcome("fail", "did not run")
    return sorted(
        nodeid
        for nodeid, outcome in baseline.results.items()
        if outcome.status == "pass" and ours.results.get(nodeid, missing).status == "fail"
    )


def first_lines(text: str, count: int = 6) -> str:
    """The failure message, pytest's further `E` lines and where in rq's test it failed, indented."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "      (no message)"
    errors = [
        line for line in lines if line.startswith("E ") and line[1:].strip() not in ("", lines[0].strip())
    ]
    where = [line for line in lines if re.match(r"^tests/\S+:\d+: ", line)]
    chosen = lines[:1] + errors[: count - 2] + where[-1:]
    return "\n".join("      " + line[:160] for line in chosen)


def table(modules: list[str], runs: list[Run]) -> str:
    """A Markdown table: per module, each run's pass/fail/skip; then totals and wall time."""
    header = ["module", *(f"{run.variant} p/f/s" for run in runs)]
    rows = [[module, *(counts(run.results, module) for run in runs)] for module in modules]
    rows.append(["total", *(counts(run.results) for run in runs)])
    rows.append(["seconds", *(f"{run.seconds:.0f}" for run in runs)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)
