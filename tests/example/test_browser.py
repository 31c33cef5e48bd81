"""The example shop in a real browser: admin, worker and django-rq dashboard, as a user sees them.

The shop runs as subprocesses (demo.py with --no-worker for migrate, admin user and runserver; the
test's own `manage.py rqworker`) on the session's private Redis; headless Chromium drives it.
Set UPDATE_SCREENSHOTS=1 to write the dashboard screenshot to docs/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.example import browser
from tests.example.browser import Pages
from tests.example.launcher import ADMIN_PASSWORD, DemoRun, manage, shop_env, start_worker
from tests.support.processes import REPO_ROOT, Proc
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
WEBHOOK_ATTEMPTS = 5  # shop.receivers.WEBHOOK_RETRY: 1 try + 4 retries


@pytest.fixture(scope="module")
def shop(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The shop's web server (no worker); webhooks fail only during an Outage."""
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("shop")
    env = shop_env(redis_url=redis_server.url, var_dir=tmp / "var", port=free_port(), failure_rate=0.0)
    demo = DemoRun(
        "--no-worker",
        "--orders",
        "0",
        "--outage-orders",
        "0",
        "--every",
        "0",
        env=env,
        log_path=tmp / "demo.log",
    )
    try:
        demo.wait_ready()
        yield demo
    finally:
        demo.abandon()


@pytest.fixture(scope="module")
def chromium(shop: DemoRun) -> Iterator[Pages]:
    with browser.chromium() as driver:
        pages = Pages(driver, shop.base_url)
        pages.log_in("admin", ADMIN_PASSWORD)
        yield pages


@pytest.fixture
def pages(chromium: Pages, redis_url: str) -> Pages:
    """The logged-in browser, with Redis emptied for this test (`redis_url` flushes it)."""
    return chromium


@pytest.fixture
def worker(shop: DemoRun, tmp_path: Path) -> Iterator[Callable[[], Proc]]:
    """Start the shop's worker when the test says so; stopped by its pid afterwards."""
    started: list[Proc] = []

    def start() -> Proc:
        started.append(start_worker(shop.env, log_dir=tmp_path))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def test_an_order_saved_in_the_admin_is_queued_then_run_by_the_worker(shop, pages, worker):
    # Given no worker running
    high = pages.queue_index("high")

    # When staff add an order in the admin
    order = pages.add("shop/order", {"customer_email": "ada@example.com", "total": "12.50"})

    # Then its confirmation job waits, queued, on the high queue
    job = pages.wait_for_job_on(f"/django-rq/queues/{high}/", what="the confirmation job queued on high")
    pages.open(f"/django-rq/queues/{high}/{job}/")
    assert "send_order_confirmation" in pages.text()
    assert "queued" in pages.text().lower()

    # When a worker starts, Then the job is finished and the email sent
    worker()
    pages.wait_for_job_on(
        f"/django-rq/queues/{high}/finished/", job_id=job, what="the confirmation job finished"
    )
    pages.open(f"/django-rq/queues/{high}/{job}/")
    assert "finished" in pages.text().lower()
    mail = Path(shop.env["SHOP_VAR_DIR"]) / "mail"
    assert any(f"Your order #{order}" in path.read_text() for path in mail.iterdir())


def test_a_webhook_refused_during_an_outage_retries_fails_and_succeeds_when_requeued(shop, pages, worker):
    # Given the partner is down
    worker()
    default = pages.queue_index("default")
    outage = pages.add("shop/outage", {"reason": "partner maintenance"})

    # When an order is added
    order = pages.add("shop/order", {"customer_email": "grace@example.com", "total": "99.00"})

    # Then its webhook job waits for a retry (scheduled), with the failed attempt in its history
    job = pages.wait_for_job_on(
        f"/django-rq/queues/{default}/scheduled/", what="the webhook job waiting to retry"
    )
    pages.open(f"/django-rq/queues/{default}/{job}/")
    assert "notify_partner" in pages.text()
    assert "retrying" in pages.text()

    # and after every retry is refused, it is in the failed registry with all its attempts
    pages.wait_for_job_on(
        f"/django-rq/queues/{default}/failed/", job_id=job, what="the webhook job failed", timeout=60
    )
    pages.open(f"/django-rq/queues/{default}/{job}/")
    history = pages.text()
    assert len(re.findall(r"'attempt': \d", history)) == WEBHOOK_ATTEMPTS, history
    assert "WebhookError" in history
    assert "HTTP 503" in history

    # When the outage ends and staff press Requeue on the failed job
    pages.delete("shop/outage", outage)
    pages.open(f"/django-rq/queues/{default}/{job}/")
    pages.driver.find_element("name", "requeue").click()

    # Then it runs again and succeeds, and the order shows the delivery
    pages.wait_for_job_on(
        f"/django-rq/queues/{default}/finished/", job_id=job, what="the requeued job finished"
    )
    pages.open(f"/admin/shop/order/{order}/change/")
    delivered = pages.driver.find_element("css selector", ".field-webhook_delivered_at .readonly").text
    assert delivered not in ("", "-"), pages.text()


def test_the_dashboard_shows_queued_retrying_finished_and_failed_jobs(shop, pages, worker, tmp_path):
    # Given orders that went through, two whose webhooks failed during an outage,
    running = worker()
    manage("demo_orders", "--count", "6", "--outage", "2", "--outage-timeout", "60", env=shop.env)
    wait_until(lambda: all_run(pages), timeout=30, what="the worker to run every job of the first orders")
    # one webhook waiting for its retry when the worker stopped,
    default = pages.queue_index("default")
    outage = pages.add("shop/outage", {"reason": "partner maintenance"})
    manage("demo_orders", "--count", "1", env=shop.env)
    pages.wait_for_job_on(f"/django-rq/queues/{default}/scheduled/", what="a webhook job waiting to retry")
    running.stop()
    pages.delete("shop/outage", outage)
    # and new orders no worker has picked up yet
    manage("demo_orders", "--count", "3", env=shop.env)

    # When staff open the dashboard
    pages.open("/django-rq/")

    # Then every state has jobs in it: queued, finished, failed and scheduled (a retry waiting)
    counts = dashboard_counts(pages.text())
    assert counts["default"]["queued"] == 3, counts
    assert counts["default"]["finished"] >= 6, counts
    assert counts["default"]["failed"] == 2, counts
    assert counts["default"]["scheduled"] == 1, counts
    assert counts["high"]["queued"] == counts["low"]["queued"] == 3, counts
    path = tmp_path / "dashboard.png"
    size = pages.driver.get_window_size()
    pages.driver.set_window_size(1280, 700)  # the queues table, not the empty page below it
    try:
        assert pages.driver.save_screenshot(str(path))
    finally:
        pages.driver.set_window_size(size["width"], size["height"])
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)


def all_run(pages: Pages) -> bool:
    pages.open("/django-rq/")
    counts = dashboard_counts(pages.text())
    return all(row["queued"] == row["active"] == row["scheduled"] == 0 for row in counts.values())


def dashboard_counts(text: str) -> dict[str, dict[str, int]]:
    """The Queues table of /django-rq/ (`default 3 0 0 6 2 1 0 -` rows) by queue and column."""
    columns = ("queued", "active", "deferred", "finished", "failed", "scheduled")
    counts = {}
    for line in text.splitlines():
        cells = line.split()
        if cells[:1] in (["high"], ["default"], ["low"]) and len(cells) > len(columns):
            counts[cells[0]] = dict(zip(columns, map(int, cells[1 : 1 + len(columns)]), strict=False))
    assert set(counts) == {"high", "default", "low"}, text
    return counts
