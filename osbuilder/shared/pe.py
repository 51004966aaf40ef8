"""The section table of a PE/COFF image (pure): what a Unified Kernel Image carries, by
section name (.osrel, .cmdline, .linux, ...; the UAPI Group's UKI specification)."""

from __future__ import annotations

import struct
from typing import BinaryIO

from osbuilder.shared.errors import OsbError

SECTION = struct.Struct("<8sIIIIIIHHI")  # IMAGE_SECTION_HEADER, 40 bytes


def sections(f: BinaryIO, name: str) -> dict[str, tuple[int, int]]:
    """Section name -> (file offset, size of its data in the file)."""
    head = f.read(64)
    if len(head) < 64 or head[:2] != b"MZ":
        raise OsbError(f"{name}: not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    f.seek(pe)
    coff = f.read(24)
    if len(coff) < 24 or coff[:4] != b"PE\0\0":
        raise OsbError(f"{name}: not a PE image (no PE signature)")
    count, opt_size = struct.unpack_from("<H", coff, 6)[0], struct.unpack_from("<H", coff, 20)[0]
    f.seek(pe + 24 + opt_size)
    table = f.read(SECTION.size * count)
    if len(table) < SECTION.size * count:
        raise OsbError(f"{name}: PE section table cut short")
    found = {}
    for i in range(count):
        raw, vsize, _, rsize, rptr, *_ = SECTION.unpack_from(table, i * SECTION.size)
        found[raw.rstrip(b"\0").decode(errors="replace")] = (rptr, min(vsize, rsize) or rsize)
    return found


def read_section(f: BinaryIO, table: dict[str, tuple[int, int]], section: str) -> bytes:
    offset, size = table[section]
    f.seek(offset)
    return f.read(size)
