"""Writes to the boot partition (FAT) on the node, shared by the slot choosers: atomic file
replacement, and staging a slot's kernel, initrd and device trees from its root."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from osbuilder.agent.sysinfo import os_release
from osbuilder.errors import OsbError
from osbuilder.layout import BOOT_TRIES, SLOTS

# mounts a slot's root read-only and yields its path
SlotMounter = Callable[[str], AbstractContextManager[Path]]


class ChooserBase:
    """What both slot choosers hold: the boot partition, the booted slot, how to mount a
    slot (set_primary reads the slot's kernel) and the tries a new slot gets."""

    def __init__(self, boot_dir: Path, booted: str, mount_slot: SlotMounter | None = None,
                 tries: int = BOOT_TRIES) -> None:
        self.boot_dir = boot_dir
        self.booted = booted
        self.mount_slot = mount_slot
        self.tries = tries

    def _check(self, slot: str) -> None:
        if slot not in SLOTS:
            raise OsbError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")


def fat_write(path: Path, data: bytes) -> None:
    """Replace a file on FAT: temp file (not *.conf, so never read as an entry), fsync,
    rename, fsync the folder. FAT has no modes or owners, so nothing else is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_slot_files(mount_slot: SlotMounter, slot: str, dest: Path,
                     dtbs: tuple[str, ...] = ()) -> str:
    """Copy the slot's kernel, initrd and the named device trees (paths under the
    kernel's /usr/lib/linux-image-<version>/) into `dest`; returns the slot's OS version.
    Files already equal are left alone (fewer writes to an SD card)."""
    with mount_slot(slot) as root:
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise OsbError(f"slot {slot}: expected one kernel in /boot, found "
                           f"{len(kernels)}: the slot does not hold an osbuilder root")
        ver = kernels[0].name.removeprefix("vmlinuz-")
        files = [(kernels[0], "vmlinuz"), (root / f"boot/initrd.img-{ver}", "initrd.img")]
        files += [(root / f"usr/lib/linux-image-{ver}" / d, d) for d in dtbs]
        for src, name in files:
            if not src.is_file():
                raise OsbError(f"slot {slot}: {src.relative_to(root)} missing from its root")
            data = src.read_bytes()
            target = dest / name
            if not (target.is_file() and target.read_bytes() == data):
                fat_write(target, data)
        release = os_release((root / "usr/lib/os-release").read_text())
    return release.get("IMAGE_VERSION", "unknown")
