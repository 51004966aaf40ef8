"""The README and docs/: every relative link leads to a file of this repository (never
outside it), the config examples announced to editors are configs the node accepts, and
the schema they name is the one `osbuilder schema config` writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.shared.nodeconfig.loader import load_bytes

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MODELINE = "# yaml-language-server: $schema=config.schema.json\n"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_stay_in_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path = (page.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} is outside the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"


def test_readme_is_short_with_contents() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150 and "**Contents:**" in text
    assert "../" not in text


def examples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            if block.startswith(MODELINE):
                found.append((page.name, block))
    return found


def test_announced_config_examples_are_valid() -> None:
    found = examples()
    assert {name for name, _ in found} >= {"README.md", "config.md", "upgrades.md"}
    for name, block in found:
        verdict = load_bytes(block, name)
        assert verdict.ok, (name, verdict.problems)


def test_the_named_schema_is_the_one_osbuilder_writes() -> None:
    out = subprocess.run([sys.executable, "-m", "osbuilder", "schema", "config"],
                         capture_output=True, text=True, check=True).stdout
    assert out == (ROOT / "osbuilder/shared/schemas/config.schema.json").read_text()
