"""Which disks the installer may write: discovery (lsblk) and the refusal rules.

A target is refused when it is not a whole block device, is too small, or any of its
file systems is mounted (the live medium itself, a disk in use: not even install.force
overrides that). A disk holding data (a partition table, file systems, RAID or LVM
signatures, found with `blkid -p`) is refused unless install.force; install.no_format
keeps an existing osbuilder layout and needs its partitions instead.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import MIB
from osbuilder.shared.run import run

NOT_DISKS = ("loop", "ram", "zram", "sr", "fd", "nbd")  # never offered, never written


@dataclass(frozen=True)
class Disk:
    path: str
    size_bytes: int
    model: str
    mounted: tuple[str, ...]  # "/dev/vda1 on /boot/efi"
    partitions: tuple[str, ...]  # /dev/vda1 ...

    def describe(self) -> str:
        return f"{self.path}  {self.size_bytes / 1e9:.1f} GB  {self.model or '-'}"


@dataclass(frozen=True)
class Target:
    """What the checks look at, gathered once (see gather)."""

    device: str  # as configured
    path: str  # resolved /dev path
    is_block: bool
    is_whole_disk: bool
    size_bytes: int
    mounted: tuple[str, ...]
    signatures: tuple[str, ...]  # "/dev/vda: gpt partition table", "/dev/vda1: ext4 …"


def _disks_from_lsblk(data: dict[str, Any]) -> list[Disk]:
    out = []
    for dev in data.get("blockdevices", []) or []:
        assert isinstance(dev, dict)
        if dev.get("type") != "disk" or str(dev.get("name", "")).startswith(NOT_DISKS):
            continue
        children = [c for c in dev.get("children") or [] if isinstance(c, dict)]
        mounted = [f"{d['path']} on {m}" for d in [dev, *children]
                   for m in d.get("mountpoints") or [] if m]
        out.append(Disk(path=str(dev["path"]), size_bytes=int(dev.get("size") or 0),
                        model=str(dev.get("model") or "").strip(), mounted=tuple(mounted),
                        partitions=tuple(str(c["path"]) for c in children)))
    return out


def list_disks(path: str | None = None) -> list[Disk]:
    """Whole disks (all, or the one at path), with their partitions and mounts."""
    argv = ["lsblk", "--json", "--bytes", "--tree", "-o", "NAME,PATH,SIZE,TYPE,MODEL,MOUNTPOINTS"]
    r = run([*argv, *([path] if path else [])], capture=True, check=False)
    if r.returncode != 0:
        return []
    return _disks_from_lsblk(json.loads(r.stdout or b"{}"))


def signatures(paths: list[str]) -> list[str]:
    """Partition tables and file systems (or RAID/LVM members) that blkid finds."""
    found = []
    for p in paths:
        r = run(["blkid", "-p", "-o", "export", p], capture=True, check=False)
        tags = dict(line.split("=", 1) for line in r.stdout.decode(errors="replace").splitlines()
                    if "=" in line)
        if "PTTYPE" in tags:
            found.append(f"{p}: {tags['PTTYPE']} partition table")
        if "TYPE" in tags:
            label = f" '{tags['LABEL']}'" if tags.get("LABEL") else ""
            found.append(f"{p}: {tags['TYPE']}{label}")
    return found


def gather(device: str) -> Target:
    path = os.path.realpath(device)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise OsbError(f"install.device {device}: {exc.strerror}") from exc
    is_block = stat.S_ISBLK(st.st_mode)
    disks = list_disks(path) if is_block else []
    disk = disks[0] if disks else None
    size = disk.size_bytes if disk else (st.st_size if not is_block else 0)
    parts = list(disk.partitions) if disk else []
    return Target(device=device, path=path, is_block=is_block,
                  is_whole_disk=disk is not None,
                  size_bytes=size, mounted=disk.mounted if disk else (),
                  signatures=tuple(signatures([path, *parts])))


def problems(t: Target, min_bytes: int, force: bool, no_format: bool) -> list[str]:
    """Why t must not be written; [] when it may."""
    where = f"install.device {t.device}" + (f" ({t.path})" if t.path != t.device else "")
    if not t.is_block:
        return [f"{where}: not a block device"]
    out = []
    if not t.is_whole_disk:
        out.append(f"{where}: not a whole disk (a partition or a {'/'.join(NOT_DISKS)} "
                   "device); name the disk itself, e.g. /dev/sda or /dev/nvme0n1")
    if t.mounted:
        out.append(f"{where}: in use, mounted: {', '.join(t.mounted)} (never overwritten, "
                   "also not with install.force)")
    if t.size_bytes < min_bytes:
        out.append(f"{where}: {t.size_bytes // MIB} MiB is too small, the A/B layout needs "
                   f"{min_bytes // MIB} MiB")
    if t.signatures and not force and not no_format:
        out.append(f"{where}: holds data ({'; '.join(t.signatures)}); refusing to erase it. "
                   "Set install.force: true (osb.install.force=true) to erase the disk")
    return out


def partition_path(disk: str, number: int) -> str:
    """/dev/sda + 1 -> /dev/sda1; /dev/nvme0n1, /dev/mmcblk0 + 1 -> ...p1 (kernel naming)."""
    return f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"


def wait_for_block(paths: list[str], tries: int = 50) -> None:
    for _ in range(tries):
        run(["udevadm", "settle", "--timeout=5"], check=False)
        if all(Path(p).is_block_device() for p in paths):
            return
        time.sleep(0.2)
    missing = [p for p in paths if not Path(p).is_block_device()]
    raise OsbError(f"partitions did not appear after partitioning: {', '.join(missing)}")
