"""SHA256SUMS beside a build's artifacts, in sha256sum's own format (`<hex>  <name>`),
so `sha256sum -c SHA256SUMS` checks a download. One file per output folder: a build
replaces its own files' lines and keeps the lines of other builds' files still there."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

SUMS = "SHA256SUMS"
LINE = re.compile(r"([0-9a-f]{64}) [ *]([^/\\\n]+)")


def read_sums(path: Path) -> dict[str, str]:
    """{file name: sha256} of a SHA256SUMS file; lines that are not sha256sum's are
    dropped (the file is rewritten from what parses)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        m = LINE.fullmatch(line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def update_sums(folder: Path, digests: Mapping[str, str]) -> Path:
    """Write folder/SHA256SUMS: these files' digests, plus the earlier lines of files
    that still exist. Written to a temp file and renamed: a reader never sees half."""
    path = folder / SUMS
    sums = {n: d for n, d in read_sums(path).items() if (folder / n).is_file()}
    sums.update(digests)
    tmp = folder / f".{SUMS}.tmp"
    tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    os.replace(tmp, path)
    return path
