"""The node's RAUC: bundle info, install and slot marks, through its command-line client."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from osbuilder.errors import OsbError
from osbuilder.run import output, run

SYSTEM_CONF = Path("/etc/rauc/system.conf")


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str


def system_compatible(conf: Path = SYSTEM_CONF) -> str:
    m = re.search(r"^compatible=(.+)$", conf.read_text(), re.M)
    if m is None:
        raise OsbError(f"{conf}: no compatible= line")
    return m.group(1).strip()


def info(bundle: Path) -> BundleInfo:
    """Signature (against the image's keyring) and manifest, before anything is written."""
    try:
        out = output(["rauc", "info", "--output-format=json", str(bundle)])
    except OsbError as exc:
        raise OsbError(f"{bundle.name}: rejected by RAUC (signature or format): {exc}") from exc
    data = json.loads(out)
    return BundleInfo(compatible=data.get("compatible") or "", version=data.get("version") or "")


def install(bundle: Path) -> None:
    run(["rauc", "install", str(bundle)])


def mark(action: str, slot: str = "booted") -> None:
    """action: good, bad or active; slot: booted, other or a slot name."""
    run(["rauc", "status", f"mark-{action}", slot])
