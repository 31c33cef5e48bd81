#!/usr/bin/env python
"""`make demo`: the example shop, its RQ worker and the django-rq dashboard, on this machine.

Starts Redis (REDIS_URL if set, else a private redis-server on a free port), migrates, makes an
admin user, starts `manage.py runserver` and `manage.py rqworker high default low`, creates sample
orders (a few during a partner outage, so the failed registry has something in it), then keeps
adding an order every few seconds so the dashboard stays alive. Ctrl-C or SIGTERM stops every
process it started, by pid, and only those.

Options (each also read from the environment): --port / DEMO_PORT (default 8000 if free, else any
free port), REDIS_URL, --var-dir / SHOP_VAR_DIR (SQLite file, sent mail, logs), DATABASE_URL,
WEBHOOK_FAILURE_RATE (0.3), DEMO_ADMIN_PASSWORD (default: a new random one, printed).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_processes import (
    Child,
    Stop,
    http_status,
    port_is_free,
    run_streaming,
    say,
    stop_on_sigterm,
    wait_until,
)

PROJECT_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROJECT_DIR.parent
QUEUES = ("high", "default", "low")
STARTUP_TIMEOUT_SECONDS = 60.0
OUTAGE_TIMEOUT_SECONDS = 150.0


class Demo:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.started = time.monotonic()
        self.children: list[Child] = []
        self.redis_server: Any = None
        self.var_dir = Path(options.var_dir).resolve()
        self.log_dir = self.var_dir / "log"
        self.port = options.port or (8000 if port_is_free(8000) else self.free_port())
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.redis_url = ""
        self.env: dict[str, str] = {}

    # -- steps ------------------------------------------------------------------------------------

    def run(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.env = self.child_env()
        self.migrate()
        password = self.ensure_admin()
        self.start_web()
        if self.options.worker:
            self.start_worker()
        else:
            say(
                f"worker: not started (--no-worker); start one with: cd {PROJECT_DIR} && "
                f"REDIS_URL={self.redis_url} SHOP_VAR_DIR={self.var_dir} "
                f"WEBHOOK_URL={self.env['WEBHOOK_URL']} "
                f"{sys.executable} manage.py rqworker {' '.join(QUEUES)}"
            )
        if self.options.worker and (self.options.orders or self.options.outage_orders):
            self.create_orders()
        self.report_queues()
        if self.options.every:
            trickle = self.spawn(
                "orders", ["demo_orders", "--count", "0", "--every", str(self.options.every)]
            )
            say(
                f"orders: one new order every {self.options.every:g}s, so jobs keep flowing "
                f"(pid {trickle.pid})"
            )
        self.print_ready(password)
        self.supervise()

    def start_redis(self) -> None:
        url = os.environ.get("REDIS_URL")
        if url:
            say(f"redis: using REDIS_URL={url}")
        else:
            from tests.support.redis_server import RedisServer

            say("redis: REDIS_URL not set, starting a private redis-server on a free loopback port")
            # Started with SIGINT blocked (redis-server keeps the mask), so the terminal's Ctrl-C
            # reaches only us and Redis is stopped last, after the worker has let go of it.
            server = RedisServer()
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self.redis_server = server.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            url = server.url
            say(f"redis: {server.binary} (pid {server.pid}) at {url}, data in {server.data_dir}")
        self.redis_url = url
        self.redis().ping()

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The checkout on the path, so a venv installed before a package of it existed still works.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(REPO_ROOT)]))
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "REDIS_URL": self.redis_url,
                "SHOP_VAR_DIR": str(self.var_dir),
                "WEBHOOK_URL": f"{self.base_url}/hooks/orders/",
            }
        )
        return env

    def migrate(self) -> None:
        where = os.environ.get("DATABASE_URL") or f"SQLite at {self.var_dir / 'db.sqlite3'}"
        say(f"database: migrating {where}")
        began = time.monotonic()
        self.manage("migrate", "--noinput", log="migrate")
        say(f"database: migrated in {time.monotonic() - began:.1f}s")

    def ensure_admin(self) -> str:
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        code = (
            "from django.contrib.auth import get_user_model\n"
            "User = get_user_model()\n"
            "user, created = User.objects.get_or_create(username='admin', "
            "defaults={'email': 'admin@example.com', 'is_staff': True, 'is_superuser': True})\n"
            "user.is_staff = user.is_superuser = True\n"
            "user.set_password(__import__('os').environ['DEMO_ADMIN_PASSWORD'])\n"
            "user.save()\n"
            "print('created' if created else 'password reset')\n"
        )
        result = self.manage(
            "shell", "--no-startup", "-c", code, log="admin", extra_env={"DEMO_ADMIN_PASSWORD": password}
        )
        say(f"admin: user 'admin' ({result.strip().splitlines()[-1]}), password {password}")
        return password

    def start_web(self) -> None:
        web = self.spawn("web", ["runserver", f"127.0.0.1:{self.port}", "--noreload"])
        say(f"web: runserver on {self.base_url} (pid {web.pid}, log {web.log_path})")
        self.wait_for(
            web, lambda: http_status(f"{self.base_url}/admin/login/") == 200, "the web server to answer"
        )
        say(f"web: answering at {self.base_url}")

    def start_worker(self) -> None:
        name = f"demo-worker-{os.getpid()}"
        worker = self.spawn("worker", ["rqworker", "--name", name, *QUEUES])
        say(f"worker: manage.py rqworker {' '.join(QUEUES)} (pid {worker.pid}, log {worker.log_path})")
        self.wait_for(worker, lambda: self.worker_registered(name), f"worker {name} to register in Redis")
        say(f"worker: {name} is listening on {', '.join(QUEUES)}")

    def create_orders(self) -> None:
        args = [
            "demo_orders",
            "--count",
            str(self.options.orders),
            "--outage",
            str(self.options.outage_orders),
            "--outage-timeout",
            str(int(OUTAGE_TIMEOUT_SECONDS)),
        ]
        say(f"orders: manage.py {' '.join(args)}")
        began = time.monotonic()
        code = run_streaming(
            [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=self.env, prefix="orders"
        )
        if code:
            raise RuntimeError(f"manage.py demo_orders exited with {code}")
        say(f"orders: done in {time.monotonic() - began:.1f}s")

    def report_queues(self) -> None:
        from rq import Queue

        connection = self.redis()
        for name in QUEUES:
            queue = Queue(name, connection=connection)
            counts = (
                queue.count,
                queue.scheduled_job_registry.count,
                queue.finished_job_registry.count,
                queue.failed_job_registry.count,
            )
            table = "queued {:>3}  retrying {:>3}  finished {:>3}  failed {:>3}".format(*counts)
            say(f"queues: {name:<7} {table}")

    def print_ready(self, password: str) -> None:
        lines = [
            "",
            f"  Shop admin        {self.base_url}/admin/       (user admin, password {password})",
            f"  Jobs dashboard    {self.base_url}/django-rq/   (django-rq: queues, jobs, failed, requeue)",
            f"  Partner webhook   {self.base_url}/hooks/orders/ (fails {self.env_rate()} of requests)",
            f"  Sent emails       {self.var_dir / 'mail'}",
            f"  Logs              {self.log_dir}",
            "",
            "  What to look at (docs/example.md has the tour):",
            "  - /django-rq/ > default > Failed: webhooks that failed during the outage; open one for",
            "    job.meta['attempts'] (every attempt's time, error and backoff delay) and press Requeue.",
            "  - /django-rq/ > default > Scheduled: webhooks waiting for their next retry.",
            "  - /admin/shop/order/: add an order and watch its three jobs go high > default > low.",
            "  - /admin/shop/outage/: add an outage to make every webhook fail, delete it to end it.",
            "",
        ]
        for line in lines:
            print(line, flush=True)
        say(f"ready in {time.monotonic() - self.started:.1f}s; press Ctrl-C to stop everything")

    def supervise(self) -> None:
        while True:
            for child in self.children:
                if not child.alive():
                    raise RuntimeError(
                        f"{child.name} (pid {child.pid}) exited with {child.popen.returncode}; "
                        f"last lines of {child.log_path}:\n{child.log_tail()}"
                    )
            time.sleep(0.5)

    def shutdown(self) -> None:
        say("stopping everything demo.py started")
        # Newest first: the order trickle, the worker (a warm shutdown finishes its current job),
        # the web server, and Redis last, once nothing uses it.
        for child in reversed(self.children):
            child.stop(signal.SIGINT if child.name == "orders" else signal.SIGTERM)
        if self.redis_server is not None:
            pid = self.redis_server.pid
            self.redis_server.cleanup()
            say(f"redis: stopped (pid {pid}), data removed")
        say("stopped")

    # -- helpers ----------------------------------------------------------------------------------

    def free_port(self) -> int:
        from tests.support.redis_server import free_port

        return free_port()

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)

    def env_rate(self) -> str:
        return os.environ.get("WEBHOOK_FAILURE_RATE", "0.3")

    def spawn(self, name: str, command: list[str]) -> Child:
        child = Child(
            name, [sys.executable, "manage.py", *command], cwd=PROJECT_DIR, env=self.env, log_dir=self.log_dir
        )
        self.children.append(child)
        return child

    def manage(self, *args: str, log: str, extra_env: dict[str, str] | None = None) -> str:
        """Run a manage.py command to completion; its output goes to var/log/<log>.log and is returned."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_DIR,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_SECONDS,
        )
        (self.log_dir / f"{log}.log").write_text(result.stdout + result.stderr)
        if result.returncode:
            raise RuntimeError(
                f"manage.py {args[0]} exited with {result.returncode}:\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def wait_for(self, child: Child, check: Callable[[], Any], what: str) -> None:
        def ready_or_dead() -> Any:
            if not child.alive():
                raise RuntimeError(
                    f"{child.name} (pid {child.pid}) exited with {child.popen.returncode} "
                    f"while waiting for {what}; last lines of {child.log_path}:\n{child.log_tail()}"
                )
            return check()

        wait_until(ready_or_dead, timeout=STARTUP_TIMEOUT_SECONDS, what=what)

    def worker_registered(self, name: str) -> bool:
        from rq import Worker

        return any(worker.name == name for worker in Worker.all(connection=self.redis()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DEMO_PORT", "0")),
        help="web server port (env DEMO_PORT; default 8000 if free, else a free one)",
    )
    parser.add_argument(
        "--var-dir",
        default=os.environ.get("SHOP_VAR_DIR", str(PROJECT_DIR / "var")),
        help="SQLite file, sent mail and logs (env SHOP_VAR_DIR; default example_project/var)",
    )
    parser.add_argument("--orders", type=int, default=50, help="sample orders to create (default 50)")
    parser.add_argument(
        "--outage-orders",
        type=int,
        default=3,
        help="orders created during a partner outage, whose webhooks fail for good (default 3)",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=3.0,
        help="then one more order every this many seconds; 0 for none (default 3)",
    )
    parser.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="start no worker (and create no orders): run `manage.py rqworker` yourself",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT))  # tests.support.redis_server, the checkout's packages
    # SIGINT means stop, even when a non-interactive shell started us with it ignored (`make demo &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    demo = Demo(parse_args(argv))
    code = 0
    with stop_on_sigterm():
        try:
            demo.run()
        except (KeyboardInterrupt, Stop):
            print(flush=True)
        except Exception as exc:  # every failure is reported, then everything is stopped
            say(f"failed: {exc}")
            code = 1
        finally:
            # A second Ctrl-C or SIGTERM must not cut the cleanup short; it is bounded anyway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            demo.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
