"""The switch of a migration: the new GPT written over k3OS's partition table, sector group
by sector group in migrate_plan.gpt_order, each flushed to the disk before the next.

sfdisk lays the table out in a sparse scratch file of the disk's size (so the bytes are
exactly what sfdisk would write); those bytes are then copied to the disk in the order
that keeps a valid table on it at every instant: k3OS's until the new one is whole.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from osbuilder.node.install.migrate_plan import gpt_order
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import SECTOR, DiskLayout
from osbuilder.shared.run import run

GPT_SIGNATURE = b"EFI PART"

Written = Callable[[str], None]  # told after each part is on the disk (tests cut there)


def gpt_entries(header: bytes) -> tuple[int, int]:
    """(first LBA, sector count) of the entry array a GPT header points at."""
    if header[:8] != GPT_SIGNATURE:
        raise OsbError("sfdisk wrote no GPT header")
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    return entries_lba, -(-count * size // SECTOR)


def new_table(layout: DiskLayout, disk_size: int, scratch_dir: Path) -> bytes:
    """The whole new table as one scratch disk image holds it: returns the first and
    last 64 KiB (primary and backup GPT) joined, and checks them."""
    with tempfile.NamedTemporaryFile(dir=scratch_dir, prefix="osb-gpt-") as f:
        f.truncate(disk_size)
        f.flush()
        run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", f.name],
            input=layout.sfdisk_script().encode())
        f.seek(0)
        head = f.read(64 * 1024)
        f.seek(disk_size - 64 * 1024)
        tail = f.read(64 * 1024)
    if head[SECTOR:SECTOR + 8] != GPT_SIGNATURE or tail[-SECTOR:][:8] != GPT_SIGNATURE:
        raise OsbError("sfdisk did not write both copies of the new GPT")
    return head + tail


def commit(disk: str, old_table: str, layout: DiskLayout, disk_size: int, scratch_dir: Path,
           written: Written = lambda _what: None) -> list[str]:
    """Write layout's GPT onto disk (k3OS's MBR or GPT before); returns the order used."""
    both = new_table(layout, disk_size, scratch_dir)
    head, tail = both[:64 * 1024], both[64 * 1024:]
    entries_lba, entries_sectors = gpt_entries(head[SECTOR:2 * SECTOR])
    tail_start = disk_size - len(tail)
    done = []
    fd = os.open(disk, os.O_WRONLY)
    try:
        for what, offset, length in gpt_order(old_table, disk_size, entries_lba,
                                              entries_sectors):
            src = head if offset < len(head) else tail
            base = 0 if src is head else tail_start
            data = src[offset - base:offset - base + length]
            if len(data) != length or os.pwrite(fd, data, offset) != length:
                raise OsbError(f"{disk}: short write of the {what}")
            os.fsync(fd)  # on a block device: the data and a cache flush, before the next
            done.append(what)
            written(what)
    finally:
        os.close(fd)
    return done
