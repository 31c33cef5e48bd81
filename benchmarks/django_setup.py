"""Starting Django in the benchmark process against the private Redis and a fresh SQLite file (or, in
the PostgreSQL pass, the database `benchmarks.postgres` recreated for it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks import postgres
from benchmarks.harness import Context

SETTINGS = "benchmarks.django_settings"
_env: dict[str, str] = {}


def setup(ctx: Context) -> dict[str, str]:
    """Configure and start Django once per process; returns the environment a worker subprocess needs."""
    if not _env:
        _env.update(DJANGO_SETTINGS_MODULE=SETTINGS, BENCH_REDIS_URL=ctx.redis_url)
        if not postgres.is_pass():
            _env.update(BENCH_SQLITE=sqlite_path(ctx))
        os.environ.update(_env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0)
    return dict(_env)


def sqlite_path(ctx: Context) -> str:
    """The SQLite file: on tmpfs when there is one, so fsync jitter does not drown the app's own cost."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="rq-signals-bench-db-", dir=shm if shm.is_dir() else None))
    return str(base / "bench.sqlite3")


def cleanup() -> None:
    """Remove the SQLite file's directory (it may be on tmpfs, i.e. in memory)."""
    path = _env.get("BENCH_SQLITE")
    if path:
        shutil.rmtree(Path(path).parent, ignore_errors=True)


def worker_args(worker_path: str, queue: str, *, burst: bool = True) -> list[str]:
    """`python -m django rqworker ...`: django-rq's command, which starts Django before the worker."""
    args = ["-m", "django", "rqworker", "--worker-class", worker_path]
    return [*args, "--burst", queue] if burst else [*args, queue]
