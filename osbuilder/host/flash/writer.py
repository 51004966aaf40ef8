"""Write an image's pieces (extents.py) to a target, then prove it by reading back.

What the target gets, where the image has:
- data: written;
- zeros outside the root slots: zeroed on the target (a hole must read as zeros: the
  boot FAT and the data ext4 rely on it, and a used SD card holds old bytes there);
- zeros inside a root slot: zeroed only up to the slot's last data; after it nothing is
  read (a squashfs, and a verity hash tree after it, know their own length), and the
  empty slot B is all such bytes: RAUC writes a whole slot before anything reads it. A
  used card keeps its old bytes there, which is the trade that makes flashing fast.
Zeroing uses the kernel's BLKZEROOUT on a block device (the device's WRITE ZEROES where
it has one, else the kernel writes zero pages) and a punched hole in a file.

Each written or zeroed range's sha256 is kept; after fsync the target's page cache is
dropped (posix_fadvise DONTNEED) and every such range read back from the device, so a
mismatch names the first bad offset.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from osbuilder.host.flash.extents import CHUNK, Piece
from osbuilder.host.flash.image_table import ImageTable
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import ExternalError, OsbError

BLKZEROOUT = 0x127F  # _IO(0x12, 127), linux/fs.h: zero a byte range of a block device
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02  # linux/falloc.h
SECTOR = 512
ZEROS = bytes(CHUNK)


@dataclass(frozen=True)
class Range:
    offset: int
    length: int
    digest: bytes | None  # sha256 of the data written; None: zeroed


@dataclass
class Written:
    size: int = 0  # image bytes gone through
    data_bytes: int = 0
    zeroed_bytes: int = 0
    ranges: list[Range] = field(default_factory=list)

    @property
    def skipped_bytes(self) -> int:
        return self.size - self.data_bytes - self.zeroed_bytes


class Target:
    """The device or file being written: positioned writes and range zeroing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.block = stat.S_ISBLK(os.fstat(fd).st_mode)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def zero(self, offset: int, length: int) -> None:
        aligned = offset % SECTOR == 0 and length % SECTOR == 0
        try:
            if self.block and aligned:
                fcntl.ioctl(self.fd, BLKZEROOUT, struct.pack("QQ", offset, length))
                return
            if not self.block and punch_hole(self.fd, offset, length):
                return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY):
                raise
        for pos in range(offset, offset + length, CHUNK):  # no offload: write zeros
            self.write(pos, ZEROS[:min(CHUNK, offset + length - pos)])


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """fallocate(2) PUNCH_HOLE|KEEP_SIZE (Python's os has no fallocate with flags); False
    where the file system or libc cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if fallocate is None:
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def split_at(pieces: Iterable[Piece], cuts: list[int]) -> Iterator[Piece]:
    """The pieces, cut at every partition boundary (so each lies in one partition)."""
    for p in pieces:
        inside = [c for c in cuts if p.offset < c < p.end]
        start = p.offset
        for c in [*inside, p.end]:
            data = None if p.data is None else p.data[start - p.offset:c - p.offset]
            yield Piece(start, c - start, data)
            start = c


def write_pieces(pieces: Iterable[Piece], table: ImageTable, target: Target,
                 progress: Progress, total: int | None, device_size: int | None) -> Written:
    out = Written()
    slots = table.slots
    cuts = sorted({b for s in slots for b in (s.start, s.end)})
    pending: list[Piece] = []  # zero runs in the current slot, needed if data follows
    pending_slot = None
    meter = progress.meter("writing", "image", total)

    def zero(runs: list[Piece]) -> None:
        for run in runs:
            target.zero(run.offset, run.length)
            out.zeroed_bytes += run.length
            out.ranges.append(Range(run.offset, run.length, None))

    for p in split_at(pieces, cuts):
        if device_size is not None and p.end > device_size:
            raise OsbError(f"the image is larger than the target ({device_size / 1e9:.2f} GB)")
        slot = next((s for s in slots if s.start <= p.offset < s.end), None)
        if slot is not pending_slot:
            pending, pending_slot = [], slot  # a slot's trailing zeros: left as they are
        if p.data is not None:
            zero(pending)
            pending = []
            target.write(p.offset, p.data)
            out.data_bytes += p.length
            out.ranges.append(Range(p.offset, p.length, hashlib.sha256(p.data).digest()))
        elif slot is not None:
            pending.append(p)
        else:
            zero([p])
        out.size = p.end
        meter.update(p.length)
    meter.finish()
    if not target.block and os.fstat(target.fd).st_size < out.size:
        os.ftruncate(target.fd, out.size)  # a hole at the end still makes the file's size
    progress.say("    syncing (flushing the device's write cache)")
    os.fsync(target.fd)
    return out


@contextlib.contextmanager
def open_target(path: str, block: bool, size: int | None) -> Iterator[Target]:
    """O_EXCL on a block device: the kernel refuses it while anything has it mounted. A
    file target is made (or grown) to hold the image."""
    flags = os.O_WRONLY | (os.O_EXCL if block else os.O_CREAT)
    fd = os.open(path, flags, 0o600)
    try:
        if not block and size is not None and os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        yield Target(fd)
    finally:
        os.close(fd)


def verify(path: str, written: Written, progress: Progress) -> str:
    """Read every written or zeroed range back from the device and compare; returns the
    sha256 of all of it, in order."""
    whole = hashlib.sha256()
    meter = progress.meter("verifying", path, written.data_bytes + written.zeroed_bytes)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for r in written.ranges:
            for pos in range(r.offset, r.offset + r.length, CHUNK):
                n = min(CHUNK, r.offset + r.length - pos)
                got = os.pread(fd, n, pos)
                whole.update(got)
                if r.digest is None:
                    ok = got == ZEROS[:n]
                else:  # data ranges are at most one CHUNK (extents.py)
                    ok = hashlib.sha256(got).digest() == r.digest
                if not ok:
                    raise ExternalError(
                        f"verification failed: {path} differs from the image in bytes "
                        f"{pos}..{pos + n - 1} (read back after writing); the medium may be "
                        "faulty or fake-capacity: try another one")
                meter.update(n)
    finally:
        os.close(fd)
    meter.finish()
    return whole.hexdigest()
