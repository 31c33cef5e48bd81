"""The README and docs/ say what the code does: settings tables, commands and links match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rq_signals import defaults
from rq_signals.conf import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text()


def settings_table(text: str = README) -> dict[str, str]:
    section = text.split("## Settings (`RQ_SIGNALS`)", 1)[1].split("\n## ", 1)[0] if text is README else text
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_the_settings_table_lists_every_key_conf_reads():
    assert set(settings_table()) == set(KNOWN_KEYS)
    assert set(settings_table(SETTINGS_DOC)) == set(KNOWN_KEYS)  # the details, in docs/settings.md


@pytest.mark.parametrize("text", [README, SETTINGS_DOC], ids=["README", "docs/settings.md"])
def test_the_settings_table_shows_the_defaults_of_defaults_py(text):
    table = settings_table(text)
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
    assert table["UNKNOWN_RECEIVER_GRACE"] == f"`{defaults.DEFAULT_UNKNOWN_RECEIVER_GRACE}`"


def test_the_readme_is_for_the_first_hour_and_its_links_lead_somewhere():
    assert len(README.split()) <= 1800
    for page in ["README.md", *(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))]:
        text = (ROOT / page).read_text()
        for target in re.findall(r"\]\(([^)#:]+?\.(?:md|png))(?:#[^)]*)?\)", text):
            assert (ROOT / page).parent.joinpath(target).resolve().exists(), f"{page} links to {target}"


def test_every_make_target_the_readme_names_exists():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([a-z-]+)`", README)) | set(re.findall(r"^make ([a-z-]+)", README, re.M))
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
