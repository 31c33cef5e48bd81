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
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


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
