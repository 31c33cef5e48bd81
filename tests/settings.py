"""Settings of the test project: SQLite by default, PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import json
import os
import tempfile

import dj_database_url
import django

from tests.support import session_redis

SECRET_KEY = "rq-signals-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_rq",
    "rq_signals",
    "tests.testapp",
    "tests",  # so rq_signals autodiscovers tests/receivers.py, as it does an app's receivers module
]

ROOT_URLCONF = "tests.urls"

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_test_db_url = os.environ.get("TEST_DATABASE_URL")
if _test_db_url:
    DATABASES = {"default": dj_database_url.parse(_test_db_url)}
    # A worker subprocess started by a test must use pytest-django's test database, not NAME.
    if os.environ.get("RQ_SIGNALS_TEST_DB_NAME"):
        DATABASES["default"]["NAME"] = os.environ["RQ_SIGNALS_TEST_DB_NAME"]
    # A second alias (set up only for tests that ask for it), for jobs that follow their database.
    DATABASES["other"] = {**DATABASES["default"], "NAME": f"{DATABASES['default']['NAME']}_other", "TEST": {}}
else:
    # A file, not :memory:, so worker subprocesses see what the test committed; one per session,
    # inherited by the subprocesses through the environment.
    _sqlite = os.environ.setdefault(
        "RQ_SIGNALS_TEST_SQLITE",
        os.path.join(tempfile.gettempdir(), f"rq-signals-tests-{os.getpid()}.sqlite3"),
    )
    _sqlite_other = _sqlite.replace(".sqlite3", "-other.sqlite3")
    # The test process and its worker subprocesses (receivers, outbox relays) write to one file at
    # once: WAL lets readers carry on during a write, IMMEDIATE takes the write lock up front instead
    # of failing mid-transaction, as example_project does (Django's advice for concurrent SQLite).
    _concurrent = {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _sqlite,
            "TEST": {"NAME": _sqlite},
            "OPTIONS": _concurrent,
        },
        # A second alias (set up only for tests that ask for it), for jobs that follow their database.
        "other": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _sqlite_other,
            "TEST": {"NAME": _sqlite_other},
            "OPTIONS": _concurrent,
        },
    }

REDIS_URL = session_redis.url()
# SERIALIZER: django-rq's dashboard reads rq_signals' JSON jobs (check rq_signals.W002).
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60, "SERIALIZER": "worker.serializers.JSONSerializer"}
    for name in ("high", "default", "low")
}
RQ = {"WORKER_CLASS": "worker.SimpleRetryWorker"}
RQ_SIGNALS: dict[str, object] = {}
#: A worker subprocess may be started with more RQ_SIGNALS keys, as JSON in this variable.
SETTINGS_ENV = "RQ_SIGNALS_TEST_SETTINGS"
if os.environ.get(SETTINGS_ENV):
    RQ_SIGNALS = {**RQ_SIGNALS, **json.loads(os.environ[SETTINGS_ENV])}

_email_dir = os.environ.get("RQ_SIGNALS_TEST_EMAIL_DIR")  # worker subprocesses: mail in files a test reads
_email_backend = "filebased" if _email_dir else "locmem"
if django.VERSION >= (6, 1):  # EMAIL_BACKEND and EMAIL_FILE_PATH are deprecated there, for MAILERS
    MAILERS = {
        "default": {
            "BACKEND": f"django.core.mail.backends.{_email_backend}.EmailBackend",
            "OPTIONS": {"file_path": _email_dir} if _email_dir else {},
        }
    }
else:
    EMAIL_BACKEND = f"django.core.mail.backends.{_email_backend}.EmailBackend"
    if _email_dir:
        EMAIL_FILE_PATH = _email_dir
