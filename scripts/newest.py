"""The newest-releases pass of `make test`: the upstream packages users get today, against our pins.

Run with the interpreter of `.venv-newest` (installed with no constraints, so pip picks the newest
releases setup.cfg admits). It prints which of the packages we build on differ from
requirements/pinned.txt, runs a quick part of the suite, and on a failure says which package
changed, so an upstream release that breaks us is seen the day it appears:

    python scripts/newest.py            # compare, then run NEWEST_TESTS with pytest
    python scripts/newest.py --compare  # only the comparison
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / "requirements" / "pinned.txt"
#: The upstream packages whose releases can break us (what setup.cfg's install_requires names).
WATCHED = ("Django", "rq", "django-rq", "redis")
#: A quick part of the suite that crosses every upstream seam: worker exit, retries, shutdown,
#: the gate, prefork, the app's send path end to end, and the dashboard.
NEWEST_TESTS = (
    "tests/worker/test_exit.py",
    "tests/worker/test_retry.py",
    "tests/worker/test_shutdown.py",
    "tests/worker/test_gate.py",
    "tests/worker/test_prefork.py",
    "tests/app/test_end_to_end.py",
    "tests/app/test_admin.py",
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def changes() -> list[str]:
    """`name pinned -> newest` for each watched package whose installed version is not the pin."""
    pins = pinned_versions()
    found = []
    for name in WATCHED:
        pinned, newest = pins.get(canonical(name), "unpinned"), installed(name)
        print(f"  {name:<10} pinned {pinned:<10} newest {newest}")
        if pinned != newest:
            found.append(f"{name} {pinned} -> {newest}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="only compare the versions")
    options = parser.parse_args()
    print(f"==> newest releases (Python {sys.version.split()[0]}), against {PINS.relative_to(REPO)}:")
    changed = changes()
    print("    changed since the pins: " + (", ".join(changed) if changed else "none"))
    if options.compare:
        return 0
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", *NEWEST_TESTS], cwd=REPO)
    if code != 0:
        culprit = ", ".join(changed) if changed else "none of Django, rq, django-rq, redis (another package)"
        print(
            f"==> the newest-releases pass FAILED (pytest exit {code}); changed since the pins: {culprit}.\n"
            "    `make test-pinned` is what `make install` gives. Fix the code for the new release (or cap\n"
            "    it in setup.cfg), then `make pins`.",
            file=sys.stderr,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
