"""docs/example.md matches the example project: the receivers it quotes and the options it lists."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.example.launcher import DEMO, EXAMPLE_DIR
from tests.support.processes import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "example.md").read_text()


def test_the_receivers_quoted_in_the_docs_are_those_of_shop_receivers():
    quoted = re.search(r"```python\n(.*?)```", DOC, re.S).group(1)
    source = (EXAMPLE_DIR / "shop" / "receivers.py").read_text()
    declarations = [
        line for line in quoted.splitlines() if line.startswith(("@async_receiver", "WEBHOOK_RETRY"))
    ]
    assert len(declarations) == 4
    for line in declarations:
        assert line in source, f"docs/example.md quotes a line shop/receivers.py does not have: {line}"


def test_the_options_table_lists_demo_py_options():
    help_text = subprocess.run(
        [sys.executable, str(DEMO), "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    documented = set(re.findall(r"^\| `(--[a-z-]+)", DOC, re.M))
    offered = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    assert documented == offered
