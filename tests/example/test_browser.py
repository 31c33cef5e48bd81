"""The example shop in a real browser: admin, worker and django-rq dashboard, as a user sees them.

The shop runs as subprocesses (demo.py with --no-worker for migrate, admin user and runserver; the
test's own `manage.py rqworker`) on the session's private Redis; headless Chromium drives it.
Set UPDATE_SCREENSHOTS=1 to write the dashboard screenshots to docs/ (dashboard*.png).
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
DEMO_RECEIVERS = ("send_order_confirmation", "notify_partner", "update_daily_totals")
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
    rows = pages.driver.find_elements("css selector", "#rqs-attempts tr.rqs-attempt-row")
    assert len(rows) == WEBHOOK_ATTEMPTS, history
    assert f"attempt {WEBHOOK_ATTEMPTS} of {WEBHOOK_ATTEMPTS}" in history
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


def test_the_dashboard_says_what_every_receiver_is_doing_and_requeues_from_the_overview(
    shop, pages, worker, tmp_path
):
    # Given orders that went through and two whose webhooks failed during a partner outage
    running = worker()
    manage("demo_orders", "--count", "4", "--outage", "2", "--outage-timeout", "60", env=shop.env)
    wait_until(lambda: all_run(pages), timeout=30, what="the worker to run every job of the orders")
    default = pages.queue_index("default")

    # When staff open the failed list of `default`
    pages.open(f"/django-rq/queues/{default}/failed/")

    # Then each row names the receiver, the order, the attempts and the error
    rows = pages.driver.find_elements("css selector", "#result_list tbody tr.rqs-call")
    assert len(rows) == 2, pages.text()
    for row in rows:
        assert "notify_partner" in row.text and "post_save" in row.text, row.text
        assert re.search(r"shop\.Order pk=\d+", row.text), row.text
        assert f"attempt {WEBHOOK_ATTEMPTS} of {WEBHOOK_ATTEMPTS}" in row.text, row.text
        assert "WebhookError: " in row.text and "503" in row.text, row.text
    order_link = rows[0].find_element("css selector", ".rqs-instance a").get_attribute("href") or ""
    assert re.search(r"/admin/shop/order/\d+/change/$", order_link), order_link
    screenshot(pages, tmp_path, "dashboard-failed.png", height=640)

    # and a failed job's page shows its header and every attempt
    pages.open(f"/django-rq/queues/{default}/{pages.job_ids(f'/django-rq/queues/{default}/failed/')[0]}/")
    attempts = pages.driver.find_elements("css selector", "#rqs-attempts tr.rqs-attempt-row")
    assert len(attempts) == WEBHOOK_ATTEMPTS, pages.text()
    assert "shop.receivers.notify_partner" in pages.text()
    assert f"attempt {WEBHOOK_ATTEMPTS} of {WEBHOOK_ATTEMPTS}" in pages.text()
    pages.driver.find_element("css selector", "details.rqs-traceback summary").click()
    screenshot(pages, tmp_path, "dashboard-job.png", height=1100)

    # When staff open the receivers overview
    pages.open("/django-rq/receivers/")

    # Then it lists the three demo receivers, each with calls counted
    counts = overview_counts(pages)
    assert set(counts) == {f"shop.receivers.{name}" for name in DEMO_RECEIVERS}, counts
    assert all(sum(row.values()) > 0 for row in counts.values()), counts
    assert counts["shop.receivers.notify_partner"]["failed"] == 2, counts
    screenshot(pages, tmp_path, "dashboard-receivers.png", height=600)

    # When staff press "Requeue all" on notify_partner's row (the partner is back)
    row = pages.driver.find_element("css selector", 'tr[data-receiver="shop.receivers.notify_partner"]')
    row.find_element("css selector", "button.rqs-requeue").click()
    wait_until(lambda: "2 failed call(s) requeued" in pages.text(), timeout=10, what="the requeue message")

    # Then the worker runs them again and they finish; the page refreshes itself to say so
    finished_before = counts["shop.receivers.notify_partner"]["finished"]

    def refreshed() -> bool:
        now = overview_counts(pages)["shop.receivers.notify_partner"]
        return now["failed"] == 0 and now["finished"] == finished_before + 2

    wait_until(refreshed, timeout=30, what="the requeued webhooks to finish, seen on the refreshing overview")
    running.stop()


def overview_counts(pages: Pages) -> dict[str, dict[str, int]]:
    """The receivers overview's counts, by receiver and state, as the page shows them now."""
    counts: dict[str, dict[str, int]] = {}
    for row in pages.driver.find_elements("css selector", "#rqs-receivers tbody tr"):
        cells = row.find_elements("css selector", "[data-state]")
        counts[row.get_attribute("data-receiver") or ""] = {
            cell.get_attribute("data-state") or "": int(cell.text or 0) for cell in cells
        }
    return counts


def screenshot(pages: Pages, tmp_path: Path, name: str, *, height: int) -> None:
    """Save the page (1400 px wide, `height` tall) to tmp_path, and to docs/ with UPDATE_SCREENSHOTS=1."""
    path = tmp_path / name
    size = pages.driver.get_window_size()
    pages.driver.set_window_size(1400, height)
    try:
        assert pages.driver.save_screenshot(str(path))
    finally:
        pages.driver.set_window_size(size["width"], size["height"])
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, REPO_ROOT / "docs" / name)


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
