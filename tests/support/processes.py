"""Real worker processes for tests: started as subprocesses, stopped by their pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Proc:
    """A subprocess we started; `stop()` and `kill()` act on its pid only."""

    def __init__(
        self, args: Sequence[str], *, env: dict[str, str] | None = None, log_path: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/stop()
        self.popen = subprocess.Popen(
            self.args,
            env=python_env(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"process {self.pid} ({' '.join(self.args[:4])}) still running after "
                f"{timeout}s; log:\n{self.output()[-3000:]}"
            ) from exc
        self._log.close()
        return code

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def start_worker(
    redis_url: str,
    queues: Sequence[str],
    *,
    tmp_path: Path,
    worker_class: str = "worker.RetryWorker",
    burst: bool = False,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    name: str = "worker",
) -> Proc:
    """`rq worker -w <class> ...` as a subprocess with tests/ importable for job functions."""
    args = [sys.executable, "-m", "rq.cli", "worker", "-u", redis_url, "-w", worker_class]
    if burst:
        args.append("--burst")
    args += list(extra_args) + list(queues)
    return Proc(args, env=env, log_path=tmp_path / f"{name}-{len(list(tmp_path.glob(name + '*')))}.log")
