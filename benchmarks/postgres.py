"""The PostgreSQL pass: the request-overhead and transaction benchmarks again, on a local PostgreSQL.

SQLite in a temp dir makes an autocommit insert far cheaper than the database a Django team runs in
production, and a receiver's cost reads larger against it. Django's settings are fixed at
`django.setup()`, so the pass runs in a subprocess of the suite (`python -m benchmarks --only
request_overhead --only transaction --sections-json PATH`) whose environment names the database
(`BENCH_DJANGO_DATABASE_URL`, read by `benchmarks/django_settings.py`); it measures with the same
code as the SQLite pass and hands its sections back as JSON.

Which PostgreSQL: `BENCH_DATABASE_URL` (`none` turns the pass off), else `DEFAULT_URL`. Loopback
only, and only a database named `DATABASE_NAME`: the pass drops and recreates it (never another
database of the server), and Django's `migrate` creates its tables. When the server does not answer
within `CONNECT_TIMEOUT_SECONDS`, the pass is skipped and the report says why.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.harness import Section, load_sections

#: The benchmarks the pass runs again, in report order.
BENCHMARKS = ("request_overhead", "transaction")
URL_ENV = "BENCH_DATABASE_URL"
#: Set by the suite in the pass's subprocess only: the database its Django uses (SQLite when unset).
PASS_ENV = "BENCH_DJANGO_DATABASE_URL"
DATABASE_NAME = "rq_signals_bench"
DEFAULT_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
CONNECT_TIMEOUT_SECONDS = 2  # libpq's minimum; a local server answers in milliseconds
#: Seconds the whole pass may take (a full run takes a few minutes).
PASS_TIMEOUT_SECONDS = 1800
SCHEMES = ("postgres", "postgresql", "pgsql")
LABEL = " (PostgreSQL)"
#: Added to a section's name in the pass: `request_overhead_postgresql` follows `request_overhead`.
SUFFIX = "_postgresql"


class Unavailable(Exception):
    """No PostgreSQL for the pass; the message says why, for the report's one-line note."""


@dataclass(frozen=True)
class Server:
    """The PostgreSQL the pass uses, and the server settings that decide what a commit costs."""

    url: str
    version: str
    synchronous_commit: str
    fsync: str

    def describe(self) -> dict[str, str]:
        """Rows for the report's Environment table."""
        return {
            "PostgreSQL server": f"{self.version} at {display(self.url)} (TCP over loopback)",
            "PostgreSQL synchronous_commit / fsync": (
                f"{self.synchronous_commit} / {self.fsync} (the server's settings, read, left unchanged)"
            ),
            "psycopg": package_version("psycopg"),
        }


def is_pass() -> bool:
    """True in the pass's subprocess (its Django runs on PostgreSQL)."""
    return bool(os.environ.get(PASS_ENV))


def find() -> Server:
    """The PostgreSQL named by `BENCH_DATABASE_URL` (else the local one), its database made fresh.

    Raises `Unavailable` when there is none to use.
    """
    given = os.environ.get(URL_ENV, "").strip()
    if given.lower() == "none":
        raise Unavailable(f"{URL_ENV}=none")
    url = given or DEFAULT_URL
    source = f"{URL_ENV} ({display(url)})" if given else f"no {URL_ENV}, and the default {display(url)}"
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise Unavailable(f"{source}: not a PostgreSQL URL (scheme {parts.scheme!r})")
    if not is_loopback(parts.hostname or ""):
        raise Unavailable(f"{source}: host {parts.hostname!r} is not loopback; the suite stays on 127.0.0.1")
    if parts.path.lstrip("/") != DATABASE_NAME:
        raise Unavailable(
            f"{source}: names database {parts.path.lstrip('/')!r}; the pass drops and recreates its "
            f"database, so it only uses one named {DATABASE_NAME!r}"
        )
    try:
        import psycopg
    except ImportError as error:
        raise Unavailable(f"psycopg is not installed ({error})") from error
    try:
        conn = psycopg.connect(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",  # the maintenance database: ours is dropped and recreated from here
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            autocommit=True,
        )
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Unavailable(f"{source}: could not connect ({reason})") from error
    with conn:
        settings = {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]  # SHOW returns one row
            for name in ("server_version", "synchronous_commit", "fsync")
        }
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
    return Server(url, settings["server_version"], settings["synchronous_commit"], settings["fsync"])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display(url: str) -> str:
    """`url` without its password, for the report and the console."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def run(server: Server, names: list[str], *, quick: bool) -> list[Section]:
    """Run `names` (of `BENCHMARKS`) in a subprocess on `server`; its sections, labeled "(PostgreSQL)"."""
    with tempfile.TemporaryDirectory(prefix="rq-signals-bench-pg-") as scratch:
        output = Path(scratch) / "sections.json"
        args = [sys.executable, "-m", "benchmarks", "--sections-json", str(output)]
        args += [f"--only={name}" for name in names] + (["--quick"] if quick else [])
        completed = subprocess.run(
            args, env={**os.environ, PASS_ENV: server.url}, timeout=PASS_TIMEOUT_SECONDS, check=False
        )
        if completed.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"the PostgreSQL pass ({' '.join(args[1:])}) exited with {completed.returncode} "
                "without writing its sections; its output is above in the console"
            )
        return load_sections(output.read_text())


def relabel(section: Section) -> Section:
    """In the pass's subprocess: say which database, in the section's name, title and row labels."""
    section.name += SUFFIX
    section.title += LABEL
    for row in section.rows:
        row.label += LABEL
    return section


def method() -> str:
    """What differs from the SQLite pass, read from this process's Django connection and server."""
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        shown = {}
        for name in ("server_version", "synchronous_commit", "fsync"):
            cursor.execute(f"SHOW {name}")
            shown[name] = cursor.fetchone()[0]
    database = settings.DATABASES["default"]
    return (
        f"The same code, counts and repeats as the SQLite section above, run by a subprocess of the "
        f"suite whose Django uses PostgreSQL {shown['server_version']} instead of the SQLite file: "
        f"database `{database['NAME']}` (dropped and recreated for this run, tables by `migrate`) at "
        f"{database['HOST']}:{database['PORT']}, TCP over loopback, psycopg "
        f"{package_version('psycopg')}, the subprocess's own private redis-server. Django's defaults: "
        f"autocommit (each `Order.objects.create()` outside `atomic()` is its own transaction, "
        f"committed by the server before `create()` returns), `CONN_MAX_AGE` "
        f"{database['CONN_MAX_AGE']}; no request cycle runs in these loops, so the one connection "
        f"opened before the timed loops serves the whole pass and connecting is in no figure. The server's "
        f"settings, read and left as configured: `synchronous_commit` = {shown['synchronous_commit']}, "
        f"`fsync` = {shown['fsync']}{durability(shown['synchronous_commit'], shown['fsync'])}."
    )


def durability(synchronous_commit: str, fsync: str) -> str:
    if synchronous_commit == "on" and fsync == "on":
        return " (PostgreSQL's defaults: every commit waits until its WAL is flushed to disk)"
    return " (not PostgreSQL's defaults: a commit need not wait for its WAL to reach the disk)"


def skipped(why: str) -> Section:
    """The one-line note that replaces the PostgreSQL sections when there is no server to use."""
    return Section(
        "postgresql", "Request overhead and transaction on PostgreSQL", f"**Skipped in this run**: {why}."
    )
