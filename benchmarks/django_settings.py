"""Settings of the benchmark project: SQLite in a temp dir, the test app's models, our private Redis.

`benchmarks.django_setup.setup()` fills the environment this module reads (`BENCH_REDIS_URL`,
`BENCH_SQLITE`) before Django starts; worker subprocesses inherit it.
"""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "rq-signals-benchmarks-only"
DEBUG = False  # with DEBUG, Django keeps every query in memory and slows down as it goes
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_rq",
    "rq_signals",
    "tests.testapp",
    "benchmarks",  # so rq_signals autodiscovers benchmarks/receivers.py in web and worker processes alike
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_SQLITE")
        or os.path.join(tempfile.gettempdir(), "rq-signals-bench.sqlite3"),
    }
}

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # port 1: fail fast if unset
RQ_QUEUES = {"bench": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60}}
RQ = {"WORKER_CLASS": "worker.SimpleRetryWorker"}
RQ_SIGNALS = {"DEFAULT_QUEUE": "bench"}
