"""File system images made in plain files (no loop devices, no mounts), reproducibly:
ids from a seed, times from SOURCE_DATE_EPOCH. Used by assemble (disk image) and the
iso format (its EFI boot image)."""

from __future__ import annotations

import os
from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.shared.layout import stable_uuid
from osbuilder.shared.run import run


def clamp_times(tree: Path, epoch: int) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (epoch, epoch), follow_symlinks=False)
    os.utime(tree, (epoch, epoch))


def make_vfat(ctx: BuildContext, img: Path, size_mib: int, label: str, src: Path,
              seed: str) -> Path:
    """A FAT file system image holding the tree src (FAT32 from 33 MiB: mkfs.vfat's pick
    below that, FAT16, is what small El Torito images use)."""
    volid = stable_uuid(seed, f"{label}-fs").replace("-", "")[:8]
    fat = ["-F", "32"] if size_mib > 32 else []
    run(["mkfs.vfat", "-C", img, str(size_mib * 1024), *fat, "-n", label, "-i", volid,
         "--invariant"])
    clamp_times(src, ctx.options.source_date_epoch)
    entries = sorted(src.iterdir())
    if entries:
        run(["mcopy", "-i", img, "-s", "-p", "-m", "-Q", *entries, "::/"], env=ctx.env)
    return img
