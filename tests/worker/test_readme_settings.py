"""The README's settings table lists every USQA_ variable, and nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from worker.settings import setting_docs

README = Path(__file__).resolve().parents[2] / "README.md"


def table() -> str:
    """The table as it should be pasted under "## Settings"."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    rows += [f"| `{v}` | `{d}` | {h.replace('|', '/')} |" for v, d, h in setting_docs()]
    return "\n".join(rows)


def test_readme_settings_table_lists_every_setting() -> None:
    text = README.read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(USQA_[A-Z0-9_]+)` \|", section, flags=re.MULTILINE)
    known = [var for var, _, _ in setting_docs()]
    missing = sorted(set(known) - set(listed))
    stale = sorted(set(listed) - set(known))
    assert not missing and not stale, (
        f"README settings table is out of date (missing {missing}, unknown {stale}); "
        f"paste this table under '## Settings':\n{table()}"
    )
    assert len(listed) == len(set(listed))
