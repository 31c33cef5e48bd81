"""The example project as `manage.py` sees it: checks pass, migrations match the models, and
rq_signals found the three receivers in shop/receivers.py on their queues."""

from __future__ import annotations

import re

import pytest

from tests.example.launcher import manage, shop_env
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
def env(redis_server: RedisServer, tmp_path) -> dict[str, str]:
    return shop_env(redis_url=redis_server.url, var_dir=tmp_path / "var", port=free_port(), failure_rate=0.3)


def test_system_checks_pass_and_migrations_match_the_models(env):
    assert "no issues" in manage("check", env=env)
    manage("makemigrations", "--check", "--dry-run", "shop", env=env)


def test_the_receivers_module_is_discovered_with_each_receiver_on_its_queue(env):
    listing = manage("rqsignals", "list", env=env)
    # One block per receiver: its dotted path, then indented details such as "queue: high".
    blocks = re.split(r"\n(?=\S)", listing.strip())
    queues = {block.split()[0]: re.search(r"queue: (\w+)", block).group(1) for block in blocks}
    assert queues == {
        "shop.receivers.send_order_confirmation": "high",
        "shop.receivers.notify_partner": "default",
        "shop.receivers.update_daily_totals": "low",
    }, listing
