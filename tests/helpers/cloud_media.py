"""Seed media for cloud-init's datasources, made as ISO 9660 images with xorriso (no loop
devices): a NoCloud seed (volume label `cidata`, files user-data and meta-data) and an
OpenStack config drive (label `config-2`, openstack/latest/{meta_data.json,user_data}).
Formats: cloud-init's docs, reference/datasources/nocloud and configdrive."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path


def _iso(dest: Path, label: str, files: dict[str, str]) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text)
        subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r",
                        "-o", str(dest), tmp], check=True, capture_output=True)
    return dest


def nocloud_iso(dest: Path, user_data: str, instance_id: str) -> Path:
    return _iso(dest, "cidata", {"user-data": user_data,
                                 "meta-data": f"instance-id: {instance_id}\n"})


def config_drive(dest: Path, user_data: str, uuid: str, hostname: str) -> Path:
    meta = {"uuid": uuid, "hostname": hostname, "name": hostname}
    return _iso(dest, "config-2", {"openstack/latest/meta_data.json": json.dumps(meta),
                                   "openstack/latest/user_data": user_data})


def cdrom(iso: Path) -> tuple[str, ...]:
    """QEMU argv for the ISO as a CD-ROM (q35: on its AHCI controller)."""
    return ("-drive", f"file={iso},media=cdrom,readonly=on,if=none,id=seed",
            "-device", "ide-cd,drive=seed")
