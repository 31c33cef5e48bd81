"""Settings of the benchmark project: SQLite in a temp dir, the test app's models, our private Redis.

`benchmarks.django_setup.setup()` fills the environment this module reads (`BENCH_REDIS_URL`,
`BENCH_SQLITE`, and `BENCH_CONN_MAX_AGE` for one run of the receiver-throughput benchmark) before
Django starts; worker subprocesses inherit it. In the PostgreSQL pass (`benchmarks/postgres.py`)
the suite sets `BENCH_DJANGO_DATABASE_URL` in that pass's subprocess, and the database is that
PostgreSQL instead of SQLite, with the same `CONN_MAX_AGE`.

As the README's quickstart: the queue's jobs are JSON (`SERIALIZER`), and every worker started in a
Django process (django-rq's `rqworker`, or one built in-process after `django.setup()`) sits behind
the app's job gate, so it runs `rq_signals.jobs.run_receiver` plus `ALLOWED_JOB_FUNCTIONS` and
refuses pickle (`ACCEPT_PICKLE` stays False). `benchmarks.jobs.noop` is allowed because the
receiver-throughput benchmark compares `run_receiver` with plain no-op copies of its jobs, run by
the same Django-run worker from the same JSON queue.
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

# Django's default is 0 (a new connection per job in run_receiver); 60 for the run that compares.
CONN_MAX_AGE = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_SQLITE")
        or os.path.join(tempfile.gettempdir(), "rq-signals-bench.sqlite3"),
        "CONN_MAX_AGE": CONN_MAX_AGE,
    }
}
if os.environ.get("BENCH_DJANGO_DATABASE_URL"):  # the PostgreSQL pass only
    import dj_database_url

    DATABASES = {
        "default": dict(
            dj_database_url.parse(os.environ["BENCH_DJANGO_DATABASE_URL"], conn_max_age=CONN_MAX_AGE)
        )
    }

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # port 1: fail fast if unset
RQ_QUEUES = {
    "bench": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60, "SERIALIZER": "worker.serializers.JSONSerializer"}
}
RQ = {"WORKER_CLASS": "worker.SimpleRetryWorker"}
RQ_SIGNALS = {
    "DEFAULT_QUEUE": "bench",
    # The plain no-op baseline the Django-run workers run besides run_receiver (see the module docstring).
    "ALLOWED_JOB_FUNCTIONS": ("benchmarks.jobs.noop",),
    "ACCEPT_PICKLE": False,  # the default, spelled out: Django-run benchmark workers load JSON only
}
