"""The migration's disk I/O on the node (the edge of migrate_k3os).

Every write before the partition table changes goes through a loop device made for
exactly one planned region (`losetup --offset --sizelimit`): the kernel itself keeps it
inside that region, whatever mkfs or a copy does. k3OS's file system is only ever mounted
read-only, with its partition's block device set read-only as well.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from osbuilder.node.install.k3os_disk import Extent, K3osDisk, NotK3os, inspect
from osbuilder.node.install.k3os_state import Unreadable
from osbuilder.node.install.write_disk import copy_image
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import LABEL_BOOT, LABEL_DATA
from osbuilder.shared.run import run

Fill = Callable[[Path], None]
Say = Callable[[str], None]
# the data file system: 4 KiB blocks and an inode per 8 KiB whatever its first size (it
# grows to the whole partition on the first boot, online: room reserved for that); the
# region holds k3OS's old bytes, so inode tables and journal are zeroed now rather than
# trusted to be (no discard either: it would reach k3OS's free blocks for nothing)
MKFS_DATA = ["mkfs.ext4", "-q", "-F", "-L", LABEL_DATA, "-T", "default", "-i", "8192", "-m", "1"]
MKFS_DATA_E = "nodiscard,lazy_itable_init=0,lazy_journal_init=0"


def mkfs_data(size: int, grow_to: int, where: str = "") -> list[str]:
    """mkfs.ext4 for a data file system of `size` bytes, with room in its group descriptor
    table to grow online to grow_to (its partition); `where`: more -E options (offset=)."""
    resize = max(grow_to, size + 4096) // 4096  # mke2fs wants more than the size
    return [*MKFS_DATA, "-E", f"{where}{MKFS_DATA_E},resize={resize}"]


class Regions(Protocol):
    """Writes confined to one region of the disk each (LoopRegions on a node; the unit
    tests have a loop-free one for disk image files)."""

    def make_data(self, span: Extent, fill: Fill, grow_to: int) -> None: ...

    def write_image(self, span: Extent, src: Path, say: Say) -> None: ...

    def make_boot(self, span: Extent, fill: Fill) -> None: ...


def disk_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def read_disk(path: str) -> K3osDisk:
    """The k3OS layout of the disk (or image file) at path; NotK3os says why not."""
    size = disk_size(path)
    r = run(["sfdisk", "--json", path], capture=True, check=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        return inspect(path, r.stdout if r.returncode == 0 else b"", size,
                       lambda off, n: os.pread(fd, n, off))
    finally:
        os.close(fd)


def find_k3os_disks(candidates: list[str]) -> list[str]:
    found = []
    for path in candidates:
        try:
            read_disk(path)
        except (NotK3os, OsbError, OSError):
            continue
        found.append(path)
    return found


@contextmanager
def loop(device: str, span: Extent) -> Iterator[str]:
    dev = run(["losetup", "--find", "--show", "--offset", str(span.start), "--sizelimit",
               str(span.size), device], capture=True).stdout.decode().strip()
    try:
        yield dev
    finally:
        run(["losetup", "--detach", dev], check=False)


@contextmanager
def mounted(dev: str, fstype: str, options: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="osb-migrate-", dir="/run") as mnt:
        run(["mount", "-t", fstype, "-o", options, dev, mnt])
        try:
            yield Path(mnt)
        finally:
            run(["umount", mnt])


class LoopRegions:
    def __init__(self, device: str) -> None:
        self.device = device

    def make_data(self, span: Extent, fill: Fill, grow_to: int) -> None:
        with loop(self.device, span) as dev:
            run([*mkfs_data(span.size, grow_to), dev])
            with mounted(dev, "ext4", "rw,noatime") as mnt:
                fill(mnt)
                os.sync()
            r = run(["e2fsck", "-f", "-n", dev], capture=True, check=False)
            if r.returncode != 0:
                raise OsbError(f"the new data file system fails its check (e2fsck exit "
                               f"{r.returncode}): {r.stdout.decode(errors='replace')[-500:]}")

    def write_image(self, span: Extent, src: Path, say: Say) -> None:
        with loop(self.device, span) as dev:
            copy_image(src, dev, span.size, say)

    def make_boot(self, span: Extent, fill: Fill) -> None:
        with loop(self.device, span) as dev:
            run(["mkfs.vfat", "-F", "32", "-n", LABEL_BOOT, dev])
            with mounted(dev, "vfat", "umask=0077") as mnt:
                fill(mnt)
                os.sync()


def fsck_state(part: str) -> None:
    """e2fsck -f -n: K3OS_STATE must be consistent, or its block bitmap (which says what
    is free for the new partitions) cannot be trusted."""
    r = run(["e2fsck", "-f", "-n", part], capture=True, check=False)
    if r.returncode != 0:
        tail = "\n    ".join(r.stdout.decode(errors="replace").strip().splitlines()[-6:])
        raise Unreadable(f"{part} (K3OS_STATE): the file system has errors (e2fsck -n exit "
                         f"{r.returncode}), so what it uses is not known for sure; boot "
                         f"k3OS once (it checks it) or run e2fsck -f {part}, then migrate "
                         f"again:\n    {tail}")


def replay_journal(part: str) -> None:
    """Mount and unmount read-only: the kernel replays k3OS's journal (as k3OS's own next
    boot would), so the block bitmap on the disk is the one in force."""
    with mounted(part, "ext4", "ro"):
        pass


@contextmanager
def state_mounted(part: str) -> Iterator[Path]:
    """K3OS_STATE read-only, its block device read-only too, for as long as the block."""
    run(["blockdev", "--setro", part])
    try:
        with mounted(part, "ext4", "ro,noexec,nosuid,nodev") as mnt:
            yield mnt
    finally:
        run(["blockdev", "--setrw", part], check=False)


def dumpe2fs(part: str) -> str:
    return run(["dumpe2fs", part], capture=True).stdout.decode(errors="replace")


def reread(device: str) -> None:
    """Tell the kernel about the new table (nothing of the disk is mounted any more)."""
    r = run(["blockdev", "--rereadpt", device], check=False)
    if r.returncode != 0:
        run(["partx", "--update", device], check=False)


def zero(device: str, span: Extent) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(span.size), span.start)
        os.fsync(fd)
    finally:
        os.close(fd)
