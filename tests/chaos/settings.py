"""Settings of chaos worker subprocesses: the test project's, plus the chaos receivers and a private Redis.

A worker runs ``tests/manage.py rqworker`` with ``DJANGO_SETTINGS_MODULE=tests.chaos.settings``:
installing ``tests.chaos`` makes rq_signals autodiscover `tests.chaos.receivers`, as it does an
app's ``receivers`` module, and ``RQ_SIGNALS_CHAOS_REDIS_URL`` points the queues at the scenario's
own redis-server (never the session's, never the shared one).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, RQ_QUEUES

INSTALLED_APPS = [*INSTALLED_APPS, "tests.chaos"]

_chaos_redis_url = os.environ.get("RQ_SIGNALS_CHAOS_REDIS_URL")
if _chaos_redis_url:
    RQ_QUEUES = {name: {**options, "URL": _chaos_redis_url} for name, options in RQ_QUEUES.items()}

# A sender subprocess of a scenario may run with another outbox mode ("always", "on_failure", "off").
if os.environ.get("RQ_SIGNALS_CHAOS_OUTBOX"):
    RQ_SIGNALS = {"OUTBOX": os.environ["RQ_SIGNALS_CHAOS_OUTBOX"]}
