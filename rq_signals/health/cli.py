"""The health probe's options and its one-line answer, shared by ``manage.py rqsignals health`` and
``python -m rq_signals.health``: the same flags, the same line, the same exit status."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from rq_signals.health import DEFAULT_MAX_AGE_SECONDS, check

DESCRIPTION = (
    "Exit 0 if this host's workers are alive and heartbeating and every queue with waiting "
    "retries is served by a retry worker; else exit 1 with one line saying what is wrong. "
    "Reads Redis only (for liveness and readiness probes)."
)


class ProbeFailed(Exception):
    """The probe's one line when it exits 1: what is unhealthy, or which option was wrong."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The probe's flags; `answer` reads them from the parsed options by their dests."""
    parser.add_argument(
        "--queue", action="append", default=[], help="Only workers of this queue (repeatable)."
    )
    parser.add_argument("--host", help="Whose workers (their hash's hostname); default: this host.")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_SECONDS,
        metavar="SECONDS",
        help="Oldest acceptable last heartbeat (default: rq's worker key lifetime, 480).",
    )
    parser.add_argument(
        "--no-pid-check",
        action="store_true",
        help="Do not check that the workers' pids run here (probe from another PID namespace).",
    )


def answer(options: Mapping[str, Any]) -> str:
    """The line to print when healthy; raises `ProbeFailed` with the line to print otherwise."""
    max_age_seconds: float = options["max_age"]
    if max_age_seconds <= 0:
        raise ProbeFailed(f"--max-age must be a number of seconds > 0, got {max_age_seconds!r}.")
    try:
        report = check(
            host=options["host"],
            queue_names=options["queue"],
            max_age_seconds=max_age_seconds,
            check_pids=not options["no_pid_check"],
        )
    except KeyError as exc:  # a --queue missing from RQ_QUEUES: the message names the configured ones
        raise ProbeFailed(str(exc.args[0]) if exc.args else str(exc)) from exc
    except RedisError as exc:  # one line, not a traceback (redis-py never shows the password)
        raise ProbeFailed(f"unhealthy: Redis did not answer: {type(exc).__name__}: {exc}") from exc
    if not report.ok:
        raise ProbeFailed(f"unhealthy: {'; '.join(report.problems)}")
    return report.summary
