"""The example shop for tests: demo.py as a subprocess (its output read line by line, its process tree
known, stopped with SIGINT as a user would), a logged-in HTTP client, and manage.py commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import psutil

from tests.support.processes import REPO_ROOT, Proc
from tests.support.waiting import wait_until

EXAMPLE_DIR = REPO_ROOT / "example_project"
DEMO = EXAMPLE_DIR / "demo.py"
ADMIN_PASSWORD = "demo-test-password"
READY_TIMEOUT_SECONDS = 150.0  # the brief's bound is 3 minutes on a fresh machine


def shop_env(*, redis_url: str | None, var_dir: Path, port: int, failure_rate: float) -> dict[str, str]:
    """Environment for demo.py and manage.py: all state in `var_dir`, nothing from a developer's setup."""
    env = dict(os.environ)
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",  # not the test suite's, which pytest-django exported
            "DEMO_PORT": str(port),
            "SHOP_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
            "DEMO_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WEBHOOK_FAILURE_RATE": str(failure_rate),
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks/orders/",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


class DemoRun:
    """`python example_project/demo.py ARGS`; stdout is collected by a thread and mirrored to a log file."""

    def __init__(self, *args: str, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["DEMO_PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._log = open(log_path, "w")  # noqa: SIM115 - closed by the reader thread
        self.popen = subprocess.Popen(
            [sys.executable, str(DEMO), *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="demo-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout, self._log:
            for line in self.popen.stdout:
                self.lines.append(line.rstrip("\n"))
                self._log.write(line)
                self._log.flush()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, *, timeout: float) -> str:
        def found() -> str | None:
            line = next((line for line in self.lines if text in line), None)
            if line is None and self.popen.poll() is not None:
                raise AssertionError(
                    f"demo.py exited with {self.popen.returncode} before printing {text!r}:\n"
                    f"{self.output()[-4000:]}"
                )
            return line

        return wait_until(found, timeout=timeout, what=f"demo.py to print {text!r}", interval=0.05)

    def wait_ready(self) -> str:
        return self.wait_for_line("demo: ready", timeout=READY_TIMEOUT_SECONDS)

    def printed_pids(self) -> dict[str, int]:
        """What demo.py said it started: `worker: ... (pid 123, ...)` -> {"worker": 123}."""
        pids = {}
        for line in self.lines:
            match = re.match(r"demo: (\w+): .*\(pid (\d+)", line)
            if match and "stopped" not in line:
                pids[match.group(1)] = int(match.group(2))
        return pids

    def process_tree(self) -> list[psutil.Process]:
        """demo.py's descendants right now (its children run in their own sessions, but stay its children)."""
        return psutil.Process(self.pid).children(recursive=True)

    def interrupt(self, signum: int = signal.SIGINT, *, timeout: float = 60.0) -> int:
        """Ctrl-C (SIGINT) or SIGTERM to demo.py only, as a terminal or a supervisor would; its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            name = signal.Signals(signum).name
            raise AssertionError(
                f"demo.py still running {timeout}s after {name}:\n{self.output()[-4000:]}"
            ) from exc
        self._reader.join(10)
        return code

    def abandon(self) -> None:
        """Test teardown: stop demo.py if a failed test left it running, then anything it left behind."""
        tree = self.process_tree() if self.popen.poll() is None else []
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for process in tree:
            if process.is_running():
                process.kill()
        self._reader.join(10)


class AdminClient:
    """A logged-in staff session over plain HTTP (urllib with a cookie jar)."""

    def __init__(self, base_url: str, *, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.base_url = base_url
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.open(f"{base_url}/admin/login/", timeout=10).read()
        token = next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
        with self.opener.open(
            f"{base_url}/admin/login/", data=urllib.parse.urlencode(form).encode(), timeout=10
        ) as response:
            if "/admin/login/" in response.url:
                raise AssertionError(f"admin login as {username!r} failed")

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, final URL, body) of GET `path`, following redirects."""
        with self.opener.open(self.base_url + path, timeout=10) as response:
            return response.status, response.url, response.read().decode()


def anonymous_get(url: str) -> tuple[int, str]:
    """(status, final URL) of an anonymous GET, following redirects."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.url


def manage(*args: str, env: dict[str, str], timeout: float = 120.0) -> str:
    """`manage.py ARGS` of the example project, to completion; its output (raises with it on failure)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE_DIR,
        env={**env, "PYTHONPATH": _pythonpath(env)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode:
        raise AssertionError(
            f"manage.py {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _pythonpath(env: dict[str, str]) -> str:
    return os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(REPO_ROOT)]))


def start_worker(env: dict[str, str], *, log_dir: Path) -> Proc:
    """`manage.py rqworker high default low` of the example project, listening; stop it by its pid."""
    worker = Proc(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low"],
        env={**env, "PYTHONPATH": _pythonpath(env)},
        log_path=log_dir / f"worker-{len(list(log_dir.glob('worker-*')))}.log",
        cwd=EXAMPLE_DIR,
    )

    def listening() -> bool:
        if not worker.alive():
            raise AssertionError(
                f"the shop's worker exited with {worker.popen.returncode}:\n{worker.output()[-3000:]}"
            )
        return "Listening on" in worker.output()

    wait_until(listening, timeout=30, what="the shop's worker to listen on its queues")
    return worker
