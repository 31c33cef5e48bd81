"""`rq_signals.connections` builds the clients django-rq builds, with django-rq's own code, unimported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django_rq.connection_utils import filter_connection_params, get_redis_connection

from rq_signals.connections import connection_key
from tests.support.clients import described
from tests.support.processes import REPO_ROOT, python_env

CONFIGS = {
    "url": {"URL": "redis://127.0.0.1:6390/2", "DEFAULT_TIMEOUT": 60},
    "url and db": {"URL": "redis://user:secret@127.0.0.1:6390/2", "DB": 5},
    "tls url": {"URL": "rediss://127.0.0.1:6390/0", "SSL_CERT_REQS": "none"},
    "host and port": {"HOST": "redis.internal", "PORT": 6391, "DB": 3, "PASSWORD": "s", "USERNAME": "u"},
    "ssl and client kwargs": {
        "HOST": "h",
        "PORT": 6392,
        "SSL": True,
        "REDIS_CLIENT_KWARGS": {"socket_timeout": 2.5, "health_check_interval": 30},
    },
    "unix socket": {"UNIX_SOCKET_PATH": "/tmp/redis.sock", "DB": 1},
    "sentinels": {"SENTINELS": [("127.0.0.1", 26390)], "MASTER_NAME": "mymaster", "DB": 2, "PASSWORD": "p"},
}

#: In a fresh interpreter: each config's client, described, and whether django_rq got imported.
PROBE = """
import json, sys
from rq_signals.connections import redis_connection
from tests.support.clients import described
clients = {name: redis_connection(config) for name, config in json.loads(sys.argv[1]).items()}
print(json.dumps({
    "clients": {name: described(client) for name, client in clients.items()},
    "django_rq": "django_rq" in sys.modules,
}))
"""


def test_the_probes_clients_are_the_ones_django_rq_builds_without_importing_django_rq():
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CONFIGS)],
        cwd=REPO_ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)

    assert probe["django_rq"] is False
    expected = {name: described(get_redis_connection(config)) for name, config in CONFIGS.items()}
    assert probe["clients"] == json.loads(json.dumps(expected))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_queues_with_the_same_connection_settings_share_a_key(name):
    config = CONFIGS[name]

    assert connection_key({**config, "DEFAULT_TIMEOUT": 1}) == connection_key(config)
    assert connection_key(config) == repr(sorted(filter_connection_params(config).items()))
