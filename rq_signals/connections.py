"""Redis clients for ``RQ_QUEUES`` entries, built by django-rq's own code, without django-rq's import cost.

django-rq builds a queue's client in `django_rq.connection_utils.get_redis_connection` (URL, ``SSL``,
``SENTINELS``, ``UNIX_SOCKET_PATH``, ``USE_REDIS_CACHE``, ...). Importing that module the usual way
first runs ``django_rq/__init__``, which imports rq's queues, workers and scheduler: about 100 ms,
most of what the health probe (`rq_signals.health`, run without ``django.setup()``) would spend. So,
unless django-rq is already imported, its ``connection_utils.py`` is loaded here from django-rq's own
installed file under a private name: the same code, run without its package. That file imports only
typing and redis at module level (django-rq 4.2); should a later release import from its own package
there, the load fails and we import django-rq the usual way: slower, the same clients.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from importlib import import_module
from types import ModuleType
from typing import Any

from redis import Redis

_PRIVATE_NAME = "rq_signals._django_rq_connection_utils"


def redis_connection(config: dict[str, Any]) -> Redis[bytes]:
    """A new Redis client for one ``RQ_QUEUES`` entry, as ``django_rq.get_queue()`` would connect."""
    client: Redis[bytes] = _connection_utils().get_redis_connection(config)
    return client


def connection_key(config: dict[str, Any]) -> str:
    """Equal for ``RQ_QUEUES`` entries with the same connection settings (one Redis server, one client)."""
    params: dict[str, Any] = _connection_utils().filter_connection_params(config)
    return repr(sorted(params.items()))


@cache
def _connection_utils() -> ModuleType:
    if "django_rq" in sys.modules:  # already paid for (a web process, manage.py): the module itself
        return import_module("django_rq.connection_utils")
    package = importlib.util.find_spec("django_rq")  # locates the package without running its __init__
    folders = list(package.submodule_search_locations or []) if package else []
    path = os.path.join(folders[0], "connection_utils.py") if folders else ""
    spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, path) if os.path.isfile(path) else None
    if spec is None or spec.loader is None:
        return import_module("django_rq.connection_utils")  # not where 4.x keeps it: the usual way
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:  # a django-rq whose connection_utils imports from its own package
        return import_module("django_rq.connection_utils")
    return module
