"""`make demo` end to end: ready, the dashboard served, and nothing left behind after Ctrl-C or SIGTERM."""

from __future__ import annotations

import re
import signal

import pytest

from tests.example.launcher import AdminClient, DemoRun, anonymous_get, shop_env
from tests.support.redis_server import free_port

# demo.py may take up to READY_TIMEOUT_SECONDS to be ready, beyond the suite's 120 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize(("redis", "stop_signal"), [("session", signal.SIGINT), ("private", signal.SIGTERM)])
def test_demo_reaches_ready_serves_the_dashboard_and_stops_all_it_started(
    redis, stop_signal, redis_url, tmp_path
):
    # Given demo.py on a port the test chose, with the session's Redis or a redis-server of its own
    env = shop_env(
        redis_url=redis_url if redis == "session" else None,
        var_dir=tmp_path / "var",
        port=free_port(),
        failure_rate=0.3,
    )
    demo = DemoRun(
        "--orders", "10", "--outage-orders", "1", "--every", "1", env=env, log_path=tmp_path / "demo.log"
    )
    try:
        # When it has said it is ready
        demo.wait_ready()
        started = demo.printed_pids()
        tree = demo.process_tree()

        # Then it started what it said, and says where to look
        expected = {"web", "worker", "orders"} | ({"redis"} if redis == "private" else set())
        assert expected <= set(started), demo.output()
        assert {p.pid for p in tree} >= set(started.values())
        assert f"{demo.base_url}/django-rq/" in demo.output()
        # the order during the outage gave up: the default queue's failed registry holds its webhook
        default_row = next(line for line in demo.lines if line.startswith("demo: queues: default"))
        assert int(re.search(r"failed\s+(\d+)", default_row).group(1)) >= 1, default_row

        # and the dashboard is django-rq's, for staff only
        status, url = anonymous_get(f"{demo.base_url}/django-rq/")
        assert "/admin/login/" in url
        status, url, body = AdminClient(demo.base_url).get("/django-rq/")
        assert status == 200
        assert url.endswith("/django-rq/")
        for queue in ("high", "default", "low"):
            assert f">{queue}<" in re.sub(r"\s+", "", body), f"queue {queue} missing from the dashboard"

        # When the user presses Ctrl-C (SIGINT), or a supervisor sends SIGTERM
        code = demo.interrupt(stop_signal)

        # Then demo.py exits cleanly and every process it started is gone
        assert code == 0, demo.output()[-3000:]
        assert demo.lines[-1] == "demo: stopped"
        left = [p for p in tree if p.is_running()]
        assert not left, f"still running after Ctrl-C: {[(p.pid, p.cmdline()) for p in left]}"
    finally:
        demo.abandon()
