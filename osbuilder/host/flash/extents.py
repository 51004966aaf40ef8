"""An image as a sequence of pieces: bytes that must be written, and runs of zeros.

A raw image is read sparsely: SEEK_DATA/SEEK_HOLE (lseek(2), Linux 3.1+) skip its holes
without reading them, the way bmaptool's block map is made from a sparse file (its
introduction: https://source.tizen.org/documentation/reference/bmaptool/introduction).
Within data, and in a decompressed .img.zst stream, every all-zero block is found too, so
a copy that lost its holes is no slower to flash.

A hole is not "don't care": it reads as zeros, and file systems rely on that (mke2fs
leaves a zeroed journal and inode tables as holes in a file; a FAT's free entries are
zeros). Which zero runs the target must really get is the writer's decision (writer.py).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

BLOCK = 4096  # the unit of zero detection; osbuilder's partitions are MiB-aligned
CHUNK = 4 << 20
ZERO_BLOCK = bytes(BLOCK)


@dataclass(frozen=True)
class Piece:
    offset: int
    length: int
    data: bytes | None  # None: a run of zeros

    @property
    def end(self) -> int:
        return self.offset + self.length


def split_zeros(offset: int, data: bytes) -> Iterator[Piece]:
    """data at offset as pieces of data and of whole zero BLOCKs (offset BLOCK-aligned)."""
    start = 0
    i = 0
    n = len(data)
    while i < n:
        if data[i:i + BLOCK] == ZERO_BLOCK:
            j = i + BLOCK
            while j < n and data[j:j + BLOCK] == ZERO_BLOCK:
                j += BLOCK
            if i > start:
                yield Piece(offset + start, i - start, data[start:i])
            yield Piece(offset + i, j - i, None)
            start = i = j
        else:
            i += BLOCK
    if start < n:
        yield Piece(offset + start, n - start, data[start:])


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each data range of a file; the whole file where the file system
    cannot say (EINVAL: no SEEK_DATA support)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from pos to the end
                return
            if exc.errno == errno.EINVAL:
                yield pos, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def read_exactly(f: IO[bytes], n: int) -> bytes:
    """n bytes, fewer only at the end (a pipe returns short reads)."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def raw_pieces(fd: int, size: int) -> Iterator[Piece]:
    """A raw image file's pieces in order, holes included, covering [0, size)."""
    pos = 0
    for start, end in data_ranges(fd, size):
        # SEEK_DATA rounds to the file system's blocks: align down to BLOCK for the split
        start = max(pos, start - start % BLOCK)
        if start > pos:
            yield Piece(pos, start - pos, None)
        while start < end:
            n = min(CHUNK, end - start)
            data = os.pread(fd, n, start)
            if not data:
                break
            yield from split_zeros(start, data)
            start += len(data)
        pos = start
    if pos < size:
        yield Piece(pos, size - pos, None)


def stream_pieces(src: IO[bytes], head: bytes) -> Iterator[Piece]:
    """A decompressed stream's pieces; head is what was already read from it."""
    pos = 0
    buf = head
    while True:
        if len(buf) < CHUNK:
            buf += read_exactly(src, CHUNK - len(buf))
        if not buf:
            return
        yield from split_zeros(pos, buf)
        pos += len(buf)
        buf = b""
