"""Key=value texts of the running system: kernel command line and os-release."""

from __future__ import annotations

from pathlib import Path


def cmdline_args(text: str) -> dict[str, str]:
    out = {}
    for arg in text.split():
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip().strip('"')
    return out


def read(path: str) -> str:
    """A file's text, or "" when it cannot be read (not every node has every file);
    bytes that are not UTF-8 (a torn file) come back replaced, not raised."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
