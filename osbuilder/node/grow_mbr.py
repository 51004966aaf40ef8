"""First boot on an MBR disk (the Raspberry Pi family): grow the data partition, the last
primary, to the end of the disk. systemd-repart does this on GPT and refuses MBR.

Only the partition's 32-bit sector count in the MBR changes, written in place with one
sector write; then the kernel learns the new size of the (mounted) partition through
BLKPG (`partx --update`), and systemd-growfs@data grows the ext4 (x-systemd.growfs).
"""

from __future__ import annotations

import os
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import ALIGN_MIB, MIB, SECTOR, mbr_partuuid
from osbuilder.shared.run import run

DATA_NUMBER = 4
ENTRIES = 446  # offset of the four 16-byte partition entries
ALIGN = ALIGN_MIB * MIB // SECTOR


def grown_mbr(mbr: bytes, number: int, disk_sectors: int) -> bytes | None:
    """The MBR with partition `number` ending at the disk's last aligned sector, or None
    when it already does (or cannot grow)."""
    if len(mbr) != SECTOR or mbr[510:512] != b"\x55\xaa":
        raise OsbError("not an MBR: the boot sector has no 55 AA signature")
    entry = ENTRIES + 16 * (number - 1)
    start = int.from_bytes(mbr[entry + 8:entry + 12], "little")
    size = int.from_bytes(mbr[entry + 12:entry + 16], "little")
    if start == 0 or size == 0:
        raise OsbError(f"MBR partition {number} is empty")
    end = min(disk_sectors, 2**32) // ALIGN * ALIGN  # MBR sizes are 32-bit
    if end <= start + size:
        return None
    new = bytearray(mbr)
    new[entry + 12:entry + 16] = (end - start).to_bytes(4, "little")
    return bytes(new)


def grow_data(sys_block: Path = Path("/sys/class/block")) -> str:
    part = Path(os.path.realpath(f"/dev/disk/by-partuuid/{mbr_partuuid(DATA_NUMBER)}"))
    disk_name = Path(os.path.realpath(sys_block / part.name)).parent.name
    disk = Path("/dev") / disk_name
    sectors = int((sys_block / disk_name / "size").read_text())  # always 512-byte units
    fd = os.open(disk, os.O_RDWR)
    try:
        new = grown_mbr(os.pread(fd, SECTOR, 0), DATA_NUMBER, sectors)
        if new is not None:
            os.pwrite(fd, new, 0)
            os.fsync(fd)
    finally:
        os.close(fd)
    if new is None:
        return f"{part} already ends at the end of {disk}"
    run(["partx", "--update", "--nr", str(DATA_NUMBER), str(disk)])
    return f"{part} now ends at the end of {disk} ({sectors * SECTOR // MIB} MiB)"
