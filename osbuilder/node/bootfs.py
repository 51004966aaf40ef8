"""Writes to the boot partition (FAT) on the node, shared by the slot choosers: file
replacement ordered for power cuts, and staging a slot's kernel, initrd and device trees
from its root.

FAT has no journal: a rename frees and allocates clusters and rewrites directory entries
in separate writes that the kernel flushes in any order, up to 30 s later. A power cut
between them once left osbuilder.env's entry pointing at clusters already freed. So
fat_write puts each change on disk before the next one depends on it, and fixed-size
state files are rewritten in place (fat_overwrite), which changes no metadata at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from osbuilder.node.sysinfo import os_release
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import fsync_dir
from osbuilder.shared.layout import BOOT_TRIES, SLOTS

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
    """Replace a file on FAT so that a power cut at any point leaves the old file or the
    new one, at worst with clusters no file uses (fsck reclaims them): the new content in
    a temp file (not *.conf, so never read as an entry), synced; renamed over the old,
    the temp entry's removal synced, then the renamed file's own entry; only then are
    the old file's clusters freed (held open until here) and the FAT synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    old = path.open("rb") if path.exists() else None
    try:
        os.replace(tmp, path)
        fsync_dir(path.parent)
        with path.open("rb") as f:
            os.fsync(f.fileno())
    finally:
        if old is not None:
            old.close()
    fsync_dir(path.parent)


def fat_overwrite(path: Path, data: bytes) -> None:
    """Rewrite a file of the same size in place (fat_write when it is missing or of
    another size): its clusters, FAT entries and directory entry stay as they are, so a
    power cut can only tear its content."""
    if not path.is_file() or path.stat().st_size != len(data):
        return fat_write(path, data)
    with path.open("r+b") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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
