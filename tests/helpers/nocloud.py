"""A NoCloud seed disk for cloud-init (made loop-free: mkfs.vfat + mcopy): a FAT volume
labelled CIDATA holding user-data and meta-data, attached to a VM as a second drive.
It stands in for EC2's metadata service: same user-data, another datasource."""

from __future__ import annotations

import subprocess
from pathlib import Path


def nocloud_seed(dest: Path, user_data: str, instance_id: str,
                 public_keys: tuple[str, ...] = ()) -> Path:
    subprocess.run(["mkfs.vfat", "-C", str(dest), "1024", "-n", "CIDATA"], check=True,
                   capture_output=True)
    meta = f"instance-id: {instance_id}\n"
    if public_keys:
        meta += "public-keys:\n" + "".join(f"  - {k}\n" for k in public_keys)
    for name, text in (("user-data", user_data), ("meta-data", meta)):
        subprocess.run(["mcopy", "-i", str(dest), "-", f"::/{name}"], input=text.encode(),
                       check=True)
    return dest


def seed_drive(seed: Path) -> tuple[str, ...]:
    """QEMU argv for the seed as a read-only virtio disk."""
    return ("-drive", f"if=virtio,format=raw,readonly=on,file={seed}")
