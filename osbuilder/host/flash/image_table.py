"""Is IMAGE an osbuilder disk image? Its partition table, read from the image's first
bytes before anything touches the target (pure: bytes in, facts or an error out).

osbuilder writes GPT on UEFI boards (partition names OSB_BOOT, OSB_ROOT_A, OSB_ROOT_B,
OSB_DATA) and MBR on the Raspberry Pi family (disk id 6f736231, "osb1": a FAT partition,
then root A, root B and data; osbuilder.shared.layout). The GPT is checked as UEFI 2.10
§5.3 describes it: "EFI PART" at LBA 1, header and entry-array CRC32s, 128-byte entries
with UTF-16LE names.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import LABEL_BOOT, LABEL_DATA, MBR_DISK_ID, SECTOR, root_label

GPT_LABELS = (LABEL_BOOT, root_label("a"), root_label("b"), LABEL_DATA)
HEAD_BYTES = 1 << 20  # every osbuilder partition starts at 1 MiB or later
MBR_TYPES = (0x0C, 0x83, 0x83, 0x83)  # FAT32 (LBA) boot, then Linux: root A, root B, data
MAX_GPT_ENTRIES = 1024


@dataclass(frozen=True)
class Part:
    number: int
    label: str  # GPT name; on MBR the name osbuilder gives that position
    start: int  # bytes
    size: int  # bytes

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class ImageTable:
    kind: str  # "gpt" or "mbr"
    parts: tuple[Part, ...]

    def by_label(self, label: str) -> Part:
        return next(p for p in self.parts if p.label == label)

    @property
    def slots(self) -> tuple[Part, ...]:
        """The root slots: read only as far as their squashfs (and its hash tree) go."""
        return tuple(p for p in self.parts if p.label in (root_label("a"), root_label("b")))

    @property
    def end(self) -> int:
        return max(p.end for p in self.parts)


def _not_ours(what: str) -> OsbError:
    return OsbError(f"not an osbuilder disk image: {what} (flash the .img or .img.zst that "
                    "`osbuilder build` wrote)")


def read_table(head: bytes, image_size: int | None) -> ImageTable:
    """The partition table in an image's first HEAD_BYTES; raises when it is not an
    osbuilder image's, or when a partition lies beyond the image's end."""
    if len(head) < 34 * SECTOR or head[510:512] != b"\x55\xaa":
        raise _not_ours("no partition table (no MBR boot signature)")
    types = [head[446 + 16 * i + 4] for i in range(4)]
    table = _gpt(head) if types[0] == 0xEE else _mbr(head, types)
    if image_size is not None and table.end > image_size:
        raise OsbError(f"the image is cut short: its partitions end at byte {table.end}, the "
                       f"file holds {image_size} (an interrupted download or copy?)")
    return table


def _gpt(head: bytes) -> ImageTable:
    hdr = head[SECTOR:2 * SECTOR]
    if hdr[:8] != b"EFI PART":
        raise _not_ours("protective MBR without a GPT header")
    hsize, = struct.unpack_from("<I", hdr, 12)
    if not 92 <= hsize <= SECTOR:
        raise _not_ours(f"GPT header size {hsize}")
    crc, = struct.unpack_from("<I", hdr, 16)
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != crc:
        raise _not_ours("GPT header checksum mismatch")
    entries_lba, count, esize, entries_crc = struct.unpack_from("<QIII", hdr, 72)
    first = entries_lba * SECTOR
    if esize != 128 or not 0 < count <= MAX_GPT_ENTRIES or first + count * esize > len(head):
        raise _not_ours("GPT partition entries out of place")
    array = head[first:first + count * esize]
    if zlib.crc32(array) != entries_crc:
        raise _not_ours("GPT partition entries checksum mismatch")
    parts = []
    for i in range(count):
        e = array[i * esize:(i + 1) * esize]
        if e[:16] == bytes(16):
            continue  # unused entry
        lo, hi = struct.unpack_from("<QQ", e, 32)
        if hi < lo:
            raise _not_ours(f"GPT partition {i + 1} ends before it starts")
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(Part(i + 1, name, lo * SECTOR, (hi - lo + 1) * SECTOR))
    names = [p.label for p in parts]
    if sorted(names) != sorted(GPT_LABELS):
        raise _not_ours(f"its GPT partitions are named {', '.join(names) or '(none)'}, "
                        f"expected {', '.join(GPT_LABELS)}")
    return ImageTable("gpt", tuple(parts))


def _mbr(head: bytes, types: list[int]) -> ImageTable:
    disk_id = head[440:444][::-1].hex()
    if disk_id != MBR_DISK_ID or types != list(MBR_TYPES):
        raise _not_ours(f"MBR disk id {disk_id} with partition types "
                        f"{', '.join(f'{t:02x}' for t in types)} (osbuilder's: {MBR_DISK_ID}, "
                        f"{', '.join(f'{t:02x}' for t in MBR_TYPES)})")
    parts = []
    for i, label in enumerate(GPT_LABELS):
        start, sectors = struct.unpack_from("<II", head, 446 + 16 * i + 8)
        parts.append(Part(i + 1, label, start * SECTOR, sectors * SECTOR))
    return ImageTable("mbr", tuple(parts))
