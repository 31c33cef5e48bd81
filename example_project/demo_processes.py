"""Processes for demo.py: start them in their own session, log them to a file, stop them by pid.

Kept apart from demo.py so that the steps of the demo read top to bottom there.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

STOP_TIMEOUT_SECONDS = 15.0


class Stop(Exception):
    """SIGTERM arrived: shut down as for Ctrl-C."""


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return value


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def child_setup() -> None:
    """In a child, before exec: Ctrl-C handling restored (a shell may have started us with SIGINT
    ignored, which children inherit), and a request to Linux to SIGTERM the child if demo.py dies
    without cleaning up."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Not Linux: no such call, and Ctrl-C and SIGTERM still stop everything.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A process demo.py started: its own session (the terminal's Ctrl-C reaches only demo.py,
    which then stops children in order), output in a log file, stopped by its pid."""

    def __init__(self, name: str, args: list[str], *, cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_setup,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, first: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Send `first`; if still running after `timeout`, SIGTERM again (rq: cold shutdown), then SIGKILL."""
        for signum, wait in ((first, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            self.popen.send_signal(signum)
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                name = signal.Signals(signum).name
                say(f"{self.name}: pid {self.pid} still running {wait:.0f}s after {name}")
        self._log.close()
        say(f"{self.name}: stopped (pid {self.pid})")


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Stop

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def http_status(url: str) -> int | None:
    """The status of GET `url`, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def run_streaming(args: list[str], *, cwd: Path, env: dict[str, str], prefix: str) -> int:
    """Run `args` to completion, each line of its output said with `prefix`; its exit code.

    Interrupted (Ctrl-C, SIGTERM), the process gets SIGINT and 5 s to clean up, then SIGKILL.
    """
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=child_setup,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            say(f"{prefix}: {line.rstrip()}")
        return process.wait()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
