"""What a compat run runs: rq's tests from its sdist on PyPI, and (optionally) our code at a revision."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rq-signals-compat"

PYTEST_INI = """\
[pytest]
markers =
    slow: rq's slow tests
    ssl_test: rq's tests that need a TLS Redis
filterwarnings = ignore::pytest.PytestUnhandledThreadExceptionWarning
"""

#: rq's tests write sentinel files at fixed /tmp paths; runs side by side would share them.
FIXED_TMP = re.compile(r"""(?<=['"])/tmp/""")


def fetch_sdist(version: str) -> Path:
    """rq's sdist for `version`, from our cache or PyPI (`pip download`, which checks PyPI's hash)."""
    cached = CACHE / f"rq-{version}.tar.gz"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rq-compat-dl-") as download:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, f"rq=={version}", "-d", download], check=True, timeout=300)
        (found,) = Path(download).glob("rq-*.tar.gz")
        shutil.move(str(found), cached)
    return cached


def unpack_tests(sdist: Path, into: Path) -> None:
    """The sdist's `tests/` into `into/tests`, and nothing else: rq's tests must import the installed rq.

    Their fixed `/tmp/...` paths become `into/tmp/...`, so that each run has its own sentinel files.
    """
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            _, _, inside = member.name.partition("/")
            if inside == "tests" or inside.startswith("tests/"):
                member.name = inside
                members.append(member)
        if not members:
            raise SystemExit(f"{sdist.name} has no tests/ directory; cannot check compatibility")
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, members=members, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: no extraction filters, names were checked above
            archive.extractall(into, members=members)  # noqa: S202
    (into / "tmp").mkdir()
    for source in (into / "tests").glob("*.py"):
        text = source.read_text()
        if FIXED_TMP.search(text):
            source.write_text(FIXED_TMP.sub(f"{into}/tmp/", text))
    (into / "pytest.ini").write_text(PYTEST_INI)


def snapshot(rev: str, into: Path) -> Path:
    """Our `worker` package as committed at `rev`, under `into` (the work tree may be mid-edit)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "worker"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into
