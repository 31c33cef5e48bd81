"""The layout of `rq_signals/` and `worker/`: no import cycle, and every import inside a function says
why it is there (house style: only where an optional dependency or Django's app loading needs one)."""

from __future__ import annotations

import pytest

from tests.support.layout import cycles, import_graph, imports_inside_functions_without_a_reason
from tests.support.processes import REPO_ROOT

PACKAGES = ("rq_signals", "worker")


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_has_no_import_cycle_counting_imports_inside_functions(package):
    graph = import_graph(REPO_ROOT, package)
    assert any(graph.values())  # the graph sees the package's imports

    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_held_by_an_import_inside_a_function(tmp_path):
    # Given a package whose two modules import each other, one of them inside a function
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "orders.py").write_text("from shop import mail\n")
    (package / "mail.py").write_text("def send():\n    from . import orders\n")
    (package / "util.py").write_text("import shop.mail\n")

    # Then the check names the two modules, and only them
    assert cycles(import_graph(tmp_path, "shop")) == [["shop.mail", "shop.orders"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_import_inside_a_function_says_why(package):
    assert imports_inside_functions_without_a_reason(REPO_ROOT, package) == []
