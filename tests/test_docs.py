"""The README says what the code does: its settings table and its commands match the code."""

from __future__ import annotations

import re
from pathlib import Path

from rq_signals import defaults
from rq_signals.conf import KNOWN_KEYS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def settings_table() -> dict[str, str]:
    section = README.split("## Settings (`RQ_SIGNALS`)", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_the_settings_table_lists_every_key_conf_reads():
    assert set(settings_table()) == set(KNOWN_KEYS)


def test_the_settings_table_shows_the_defaults_of_defaults_py():
    table = settings_table()
    assert table["DEFAULT_QUEUE"] == f'`"{defaults.DEFAULT_QUEUE}"`'
    assert table["EAGER"] == f"`{defaults.DEFAULT_EAGER}`"
    assert table["MISSING_INSTANCE"] == f'`"{defaults.DEFAULT_MISSING_INSTANCE}"`'
    assert table["OUTBOX"] == f'`"{defaults.DEFAULT_OUTBOX}"`'
    assert table["MAX_PAYLOAD_BYTES"] == f"`{defaults.DEFAULT_MAX_PAYLOAD_BYTES}`"
    policy = defaults.DEFAULT_RETRY
    assert table["DEFAULT_RETRY"] == (
        f"`Backoff(max_retries={policy.max_retries}, base={policy.base}, factor={policy.factor}, "
        f'max_delay={policy.max_delay}, jitter="{policy.jitter}")`'
    )


def test_every_make_target_the_readme_names_exists():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([a-z-]+)`", README)) | set(re.findall(r"^make ([a-z-]+)", README, re.M))
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
