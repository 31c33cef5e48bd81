"""Settings of the example shop.

Everything that differs between machines comes from the environment:

- ``REDIS_URL``: the Redis that RQ uses (``make demo`` starts a private one when unset).
- ``DATABASE_URL``: any URL dj-database-url understands; SQLite in ``SHOP_VAR_DIR`` by default.
- ``SHOP_VAR_DIR``: where the SQLite file and the sent emails go (``example_project/var``).
- ``WEBHOOK_URL``: where order webhooks are POSTed (this project's own ``/hooks/orders/``).
- ``WEBHOOK_FAILURE_RATE``: the share of webhook deliveries the endpoint answers with 503 (0.3).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django

from rq_signals import Backoff

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOP_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # so `manage.py migrate` works on a fresh clone

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-shop-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "rq_signals",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and `demo_orders` write to one file at once: WAL lets readers
    # carry on during a write, IMMEDIATE takes the write lock up front instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

STATIC_URL = "static/"

# Redis and the queues: django-rq's settings, read by rq_signals too.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# SERIALIZER: rq_signals' jobs are JSON, and django-rq's dashboard reads them with it.
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60, "SERIALIZER": "worker.serializers.JSONSerializer"}
    for name in ("high", "default", "low")
}
RQ = {"WORKER_CLASS": "worker.RetryWorker"}
RQ_SIGNALS = {
    "DEFAULT_QUEUE": "default",
    # For receivers declared without retry=...; the shop's receivers each name their own.
    "DEFAULT_RETRY": Backoff(max_retries=3, base=0.5, max_delay=60),
    "EAGER": os.environ.get("RQ_SIGNALS_EAGER", "0") == "1",
}

# Order confirmations are written to files, one per message, instead of being sent.
if django.VERSION >= (6, 1):  # MAILERS replaces EMAIL_BACKEND and EMAIL_FILE_PATH (deprecated there)
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(VAR_DIR / "mail")},
        }
    }
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = "shop@example.com"

# The partner webhook: this project serves the endpoint itself and makes it fail now and then.
WEBHOOK_URL = os.environ.get("WEBHOOK_URL", "http://127.0.0.1:8000/hooks/orders/")
WEBHOOK_FAILURE_RATE = float(os.environ.get("WEBHOOK_FAILURE_RATE", "0.3"))
WEBHOOK_TIMEOUT_SECONDS = 5.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "shop": {"handlers": ["console"], "level": "INFO"},
        "rq_signals": {"handlers": ["console"], "level": "INFO"},
        "worker": {"handlers": ["console"], "level": "INFO"},
    },
}
