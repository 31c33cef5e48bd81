"""The layout of `rq_signals/`: no import cycle, and every import inside a function says why it is there.

Read with `ast` from the source, so imports inside functions and under ``TYPE_CHECKING`` count as
much as those at module level: a cycle held together by a deferred import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import REPO_ROOT

PACKAGE = "rq_signals"

Graph = dict[str, set[str]]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` (found below `root`) by dotted name; a package by its own name."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(root: Path, package: str) -> Graph:
    """Which modules of `package` each of its modules imports, wherever the import statement stands."""
    modules = module_files(root, package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, name, is_package):
                # `from rq_signals import queues`: the module; `from rq_signals import Backoff`: the package.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names]


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected sets of more than one module (Tarjan), each sorted: the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_rq_signals_has_no_import_cycle_counting_imports_inside_functions():
    graph = import_graph(REPO_ROOT, PACKAGE)
    assert "rq_signals.jobwriter" in graph["rq_signals.enqueue"]  # the graph sees the package's imports

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


def test_every_import_inside_a_function_of_rq_signals_says_why():
    # House style: imports inside functions only where an optional dependency or Django's app
    # loading needs one, each with a comment (on its line or the line above) saying why.
    silent = []
    for path in module_files(REPO_ROOT, PACKAGE).values():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                    if "#" not in here and not above.startswith("#"):
                        silent.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {here.strip()}")
    assert silent == []
