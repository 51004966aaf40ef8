"""The osbuilder checkout a build runs from: its git commit time (the default
SOURCE_DATE_EPOCH) and revision (recorded in the image manifest)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import output

SOURCE_DIR = Path(__file__).resolve().parents[2]  # the checkout, when run from one


def _git(*args: str) -> str | None:
    # an installed package (site-packages) has no pyproject.toml beside it: never ask git
    # there, it could answer for whatever repository the venv happens to sit in
    if not (SOURCE_DIR / "pyproject.toml").is_file():
        return None
    try:
        return output(["git", "-C", SOURCE_DIR, *args]).strip()
    except OsbError:  # no git, or not a checkout (an sdist, a copied tree)
        return None


def commit_time() -> int | None:
    text = _git("log", "-1", "--format=%ct")
    return int(text) if text and text.isdigit() else None


def revision() -> str:
    rev = _git("rev-parse", "HEAD")
    if not rev:
        return "unknown"
    return rev + ("-dirty" if _git("status", "--porcelain") else "")
