"""Versions and machine facts printed at the top of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

import redis


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """The commit measured: `RQ_SIGNALS_BENCH_COMMIT` (set when running from an export), else git's HEAD,
    flagged when the working tree has uncommitted changes (other engineers' work in progress)."""
    exported = os.environ.get("RQ_SIGNALS_BENCH_COMMIT")
    if exported:
        return f"{exported} (clean export)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return f"{commit} + uncommitted changes" if dirty.stdout.strip() else commit


def describe(conn: redis.Redis[bytes]) -> dict[str, str]:
    server = conn.info("server")
    load = os.getloadavg()
    return {
        "Python": platform.python_version(),
        "rq": package_version("rq"),
        "redis-py": package_version("redis"),
        "Redis server": f"{server['redis_version']} (private, loopback, no persistence)",
        "Django": package_version("Django"),
        "django-rq": package_version("django-rq"),
        "OS": platform.platform(),
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": cpu_model(),
        "Load average at start": " / ".join(f"{value:.2f}" for value in load),
        "Commit": git_commit(),
    }
