"""A small disk image laid out like osbuilder's (osbuilder.shared.layout: boot FAT, root
A, root B, data; GPT, or the Pi family's MBR), sparse as the build writes it, for the
flash tests: a few MiB instead of 2.5 GB."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from osbuilder.shared.arches import ARCHES
from osbuilder.shared.layout import MIB, ab_layout_of

BOOT_MIB, ROOT_MIB, DATA_MIB = 4, 4, 2


@dataclass(frozen=True)
class Region:
    start: int
    end: int


@dataclass(frozen=True)
class SmallImage:
    path: Path
    size: int
    boot: Region
    slot_a: Region
    slot_b: Region
    data: Region
    slot_a_data_end: int  # after this, slot A holds only zeros (a hole)
    data_bytes: int  # bytes that are not holes and not zero


def small_image(dest: Path, table: str = "gpt") -> SmallImage:
    """Boot: a FAT with one file; slot A: 1 MiB of random bytes, a 1 MiB hole, 512 KiB
    of random bytes, then a hole to the end; slot B: a hole; data: 256 KiB of random
    bytes at its start, then a hole (as ext4's zeroed journal would be)."""
    layout = ab_layout_of(BOOT_MIB, ROOT_MIB, DATA_MIB, ARCHES["amd64"].gpt_root_type,
                          "flash-test", table)
    dest.write_bytes(b"")
    os.truncate(dest, layout.total_bytes)
    subprocess.run(["sfdisk", "-q", str(dest)], input=layout.sfdisk_script().encode(),
                   check=True)
    boot, a, b, data = (Region(p.start_bytes, p.start_bytes + p.size_bytes)
                        for p in layout.partitions)
    fat = dest.with_name(dest.name + ".vfat")
    subprocess.run(["mkfs.vfat", "-C", str(fat), str(BOOT_MIB * 1024), "-n", "OSB_BOOT"],
                   check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", str(fat), "-", "::/cmdline.txt"], input=b"quiet\n",
                   check=True)
    # dd conv=sparse, as the assemble stage places file systems: zero blocks stay holes
    subprocess.run(["dd", f"if={fat}", f"of={dest}", "bs=4096", f"seek={boot.start // 4096}",
                    "conv=notrunc,sparse", "status=none"], check=True)
    fat.unlink()
    with dest.open("r+b") as f:
        f.seek(a.start)
        f.write(os.urandom(MIB))
        f.seek(a.start + 2 * MIB)
        f.write(os.urandom(MIB // 2))
        f.seek(data.start)
        f.write(os.urandom(MIB // 4))
    allocated = sum(len(blk) for blk in _blocks(dest) if any(blk))
    return SmallImage(dest, layout.total_bytes, boot, a, b, data, a.start + 2 * MIB + MIB // 2,
                      allocated)


def _blocks(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    return [raw[i:i + 4096] for i in range(0, len(raw), 4096)]
