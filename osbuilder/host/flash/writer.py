"""Write an image (raw, or .img.zst decompressed on the fly) to a device, then prove it
by reading every byte back.

Each chunk's sha256 is kept as it is written; after fsync the page cache of the target is
dropped (posix_fadvise DONTNEED), so the read-back comes from the device, not from memory,
and a mismatch names the first bad offset.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from osbuilder.host.progress import Progress
from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import output, stream

CHUNK = 4 << 20


@dataclass(frozen=True)
class Written:
    size: int
    sha256: str
    chunk_digests: tuple[bytes, ...]  # sha256 of each CHUNK-sized piece, in order


def is_zstd(image: Path) -> bool:
    return image.name.endswith(".zst")


def image_size(image: Path) -> int | None:
    """Bytes that will be written: the file's size, or the size a .zst frame records
    (None when the frame does not say, e.g. compressed from a pipe)."""
    if not is_zstd(image):
        return image.stat().st_size
    try:
        info = output(["zstd", "-lv", image])
    except CommandError as exc:
        raise OsbError(f"IMAGE {image}: not a readable zstd file:\n{exc.stderr_tail}") from exc
    m = re.search(r"Decompressed Size:.*\((\d+) B\)", info)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def open_image(image: Path) -> Iterator[IO[bytes]]:
    if is_zstd(image):
        with stream(["zstd", "-dc", "-q", image]) as pipe:
            yield pipe
    else:
        with image.open("rb") as f:
            yield f


def read_chunk(src: IO[bytes]) -> bytes:
    """CHUNK bytes (fewer only at the end): a pipe returns short reads."""
    parts, n = [], 0
    while n < CHUNK:
        b = src.read(CHUNK - n)
        if not b:
            break
        parts.append(b)
        n += len(b)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_image(image: Path, target: Path, progress: Progress,
                device_size: int | None = None) -> Written:
    total = image_size(image)
    if device_size is not None and total is not None and total > device_size:
        raise OsbError(f"{image} needs {total / 1e9:.2f} GB, {target} has only "
                       f"{device_size / 1e9:.2f} GB")
    whole = hashlib.sha256()
    digests = []
    size = 0
    # O_EXCL on a block device: the kernel refuses if anything has it mounted meanwhile
    flags = os.O_WRONLY | (os.O_EXCL if target.is_block_device() else 0)
    fd = os.open(target, flags)
    try:
        meter = progress.meter("writing", f"{image.name} -> {target}", total)
        with open_image(image) as src:
            while chunk := read_chunk(src):
                if device_size is not None and size + len(chunk) > device_size:
                    raise OsbError(f"{image} is larger than {target} "
                                   f"({device_size / 1e9:.2f} GB)")
                write_all(fd, chunk)
                whole.update(chunk)
                digests.append(hashlib.sha256(chunk).digest())
                size += len(chunk)
                meter.update(len(chunk))
        meter.finish()
        progress.say("    syncing (flushing the device's write cache)")
        os.fsync(fd)
    finally:
        os.close(fd)
    return Written(size, whole.hexdigest(), tuple(digests))


def verify(target: Path, written: Written, progress: Progress) -> str:
    """Read the written range back from the device, compare chunk by chunk; returns the
    sha256 of what was read."""
    whole = hashlib.sha256()
    meter = progress.meter("verifying", str(target), written.size)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            for i, want in enumerate(written.chunk_digests):
                offset = i * CHUNK
                chunk = read_chunk(f)[: written.size - offset]
                whole.update(chunk)
                if hashlib.sha256(chunk).digest() != want:
                    raise OsbError(
                        f"verification failed: {target} differs from the image in bytes "
                        f"{offset}..{offset + CHUNK - 1} (read back after writing); the "
                        "medium may be faulty or fake-capacity: try another one")
                meter.update(len(chunk))
    finally:
        os.close(fd)
    meter.finish()
    return whole.hexdigest()
