"""Headless Chromium for the browser tests: Debian's chromium and chromedriver, nothing downloaded."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def missing() -> str | None:
    """Why Chromium cannot run here, or None."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
        return (
            f"{' and '.join(absent)} not installed; `make test` installs Debian's chromium and "
            "chromium-driver (scripts/ensure-chromium.sh) where it can (root and apt-get)"
        )
    return None


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own --user-data-dir), quit afterwards."""
    with tempfile.TemporaryDirectory(prefix="rq-signals-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(20)
            yield driver
        finally:
            driver.quit()


class Pages:
    """The admin and django-rq pages as a user clicks through them."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def text(self) -> str:
        """The page's visible text; "" while a navigation replaces the page under us (poll again)."""
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except StaleElementReferenceException:
            return ""

    def log_in(self, username: str, password: str) -> None:
        self.open("/admin/login/?next=/admin/")
        self.driver.find_element(By.ID, "id_username").send_keys(username)
        self.driver.find_element(By.ID, "id_password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_until(
            lambda: "Site administration" in self.text(), timeout=10, what="the admin index after login"
        )

    def add(self, model_path: str, fields: dict[str, str]) -> int:
        """Fill in /admin/<model_path>/add/ and save; the new object's pk, from the success message's link."""
        self.open(f"/admin/{model_path}/add/")
        for name, value in fields.items():
            field = self.driver.find_element(By.ID, f"id_{name}")
            field.clear()
            field.send_keys(value)
        self.driver.find_element(By.NAME, "_save").click()
        link = wait_until(
            lambda: self.driver.find_elements(By.CSS_SELECTOR, ".messagelist .success a"),
            timeout=10,
            what=f"the 'added successfully' message for a new {model_path}",
        )[0]
        return int(re.search(r"/(\d+)/change/", link.get_attribute("href") or "").group(1))

    def delete(self, model_path: str, pk: int) -> None:
        self.open(f"/admin/{model_path}/{pk}/delete/")
        self.driver.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()
        wait_until(
            lambda: "deleted successfully" in self.text(), timeout=10, what=f"{model_path} {pk} deleted"
        )

    # django-rq's dashboard

    def queue_index(self, name: str) -> int:
        """The dashboard's index of queue `name`, read from its link on /django-rq/."""
        self.open("/django-rq/")
        link = self.driver.find_element(By.XPATH, f"//table//a[normalize-space()='{name}']")
        return int(re.search(r"/queues/(\d+)/", link.get_attribute("href") or "").group(1))

    def job_ids(self, path: str) -> list[str]:
        """Job ids listed on a django-rq registry page (`/django-rq/queues/1/failed/`, ...)."""
        self.open(path)
        return [a.text.strip() for a in self.driver.find_elements(By.CSS_SELECTOR, "#result_list tbody th a")]

    def wait_for_job_on(self, path: str, *, what: str, job_id: str | None = None, timeout: float = 30) -> str:
        """Reload registry page `path` until it lists `job_id` (or any job); that job's id."""

        def listed() -> str | None:
            ids = self.job_ids(path)
            if job_id is None:
                return ids[0] if ids else None
            return job_id if job_id in ids else None

        return wait_until(listed, timeout=timeout, what=what, interval=0.1)
