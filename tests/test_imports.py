"""What importing our packages costs: their light names load without rq's worker machinery.

A Django settings module (``from rq_signals import Backoff``), a web process and the health probe
import `rq_signals` and parts of `worker`; `worker`'s and `rq_signals`' heavy public names load on
first use (PEP 562). Each import runs in a fresh interpreter, so nothing this session imported counts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import rq_signals
import worker
from tests.support.processes import REPO_ROOT, python_env


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running `statement`."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def of_package(modules: set[str], package: str) -> set[str]:
    return {name for name in modules if name == package or name.startswith(f"{package}.")}


@pytest.mark.parametrize(
    "statement",
    [
        "import rq_signals",
        "from rq_signals import Backoff, SerializationError",
        "import worker",
        "import worker.exceptions",
        "from worker.retries.backoff import Backoff",
    ],
)
def test_light_imports_load_nothing_of_rq(statement):
    modules = modules_after(statement)

    assert "rq.worker" not in modules
    assert of_package(modules, "rq") == set()


def test_the_health_probe_imports_neither_rq_nor_django_rq_nor_the_apps():
    modules = modules_after("import rq_signals.health.__main__")

    assert of_package(modules, "rq") == set()
    assert of_package(modules, "django_rq") == set()
    assert "django.apps.registry" not in modules  # no django.setup(): the settings only


def test_a_heavy_public_name_loads_on_first_use():
    modules = modules_after("from worker import RetryWorker\nfrom rq_signals import async_receiver")

    assert {"rq.worker", "worker.workers", "rq_signals.decorator"} <= modules


@pytest.mark.parametrize("package", [worker, rq_signals], ids=lambda package: package.__name__)
def test_every_public_name_is_listed_importable_and_starred(package):
    assert set(package.__all__) <= set(dir(package))
    assert all(getattr(package, name) is not None for name in package.__all__)

    starred: dict[str, object] = {}
    exec(f"from {package.__name__} import *", starred)

    assert set(package.__all__) <= set(starred)


@pytest.mark.parametrize("package", [worker, rq_signals], ids=lambda package: package.__name__)
def test_a_name_that_is_not_there_is_an_attribute_error_naming_it(package):
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'RetryWorkr'"):
        package.RetryWorkr  # noqa: B018
