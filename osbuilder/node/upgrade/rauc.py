"""The node's RAUC: bundle info, install and slot marks, through its command-line client."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run

SYSTEM_CONF = Path("etc/rauc/system.conf")  # under the node's root


MOUNT_POINT = Path("run/rauc/bundle")  # <mountprefix>/bundle (system.conf), under the root
CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str
    images: tuple[tuple[str, str], ...]  # (file name, sha256) from the signed manifest


def system_compatible(conf: Path = Path("/") / SYSTEM_CONF) -> str:
    m = re.search(r"^compatible=(.+)$", conf.read_text(), re.M)
    if m is None:
        raise OsbError(f"{conf}: no compatible= line")
    return m.group(1).strip()


def info(bundle: Path) -> BundleInfo:
    """Signature (against the image's keyring) and manifest, before anything is written."""
    proc = run(["rauc", "info", "--output-format=json", str(bundle)], capture=True,
               check=False)
    if proc.returncode != 0:
        raise OsbError(f"{bundle.name}: rejected by RAUC: {said(proc)}")
    data = json.loads(proc.stdout)
    images = tuple((img["filename"], img["checksum"]) for entry in data.get("images", [])
                   for img in entry.values())
    return BundleInfo(compatible=data.get("compatible") or "", version=data.get("version") or "",
                      images=images)


def verify_payload(bundle: Path, info: BundleInfo, mount_point: Path = Path("/") / MOUNT_POINT,
                   also: Callable[[Path], None] | None = None) -> None:
    """Read every image once through RAUC's dm-verity mount of the bundle and compare it
    with the signed manifest. A tampered payload then fails here, before RAUC starts to
    write the inactive slot (dm-verity alone would stop the write halfway). `also` checks
    more of the mounted bundle (its boot files)."""
    try:
        run(["rauc", "mount", str(bundle)])
    except OsbError as exc:
        raise OsbError(f"{bundle.name}: payload does not match its signed hash tree: "
                       f"{exc}") from exc
    try:
        for name, digest in info.images:
            h = hashlib.sha256()
            try:
                with (mount_point / name).open("rb") as f:
                    while block := f.read(CHUNK):
                        h.update(block)
            except OSError as exc:
                raise OsbError(f"{bundle.name}: payload does not match its signed hash tree "
                               f"({name}: {exc.strerror})") from exc
            if h.hexdigest() != digest:
                raise OsbError(f"{bundle.name}: {name} does not match its signed sha256")
        if also is not None:
            also(mount_point)
    finally:
        run(["umount", str(mount_point)], check=False)


def said(proc: subprocess.CompletedProcess[bytes]) -> str:
    """Why RAUC failed: it says so on stderr or stdout, depending on version and command."""
    lines = (proc.stderr + proc.stdout).decode(errors="replace").splitlines()
    why = [line for line in lines if line.strip() and not line.startswith("rauc-Message")]
    return " / ".join(why[-3:]) or f"exit {proc.returncode}"


def install(bundle: Path) -> None:
    proc = run(["rauc", "install", str(bundle)], capture=True, check=False)
    if proc.returncode != 0:
        raise OsbError(f"RAUC could not install {bundle.name}: {said(proc)}")


def mark(action: str, slot: str = "booted") -> None:
    """action: good, bad or active; slot: booted, other or a slot name."""
    run(["rauc", "status", f"mark-{action}", slot])
