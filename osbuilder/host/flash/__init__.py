"""`osbuilder flash IMAGE DEVICE`: check the image and the target, ask, write only what
the image holds, sync, read back and compare, then put the node's config.yaml on the boot
partition.

Order matters: the image's partition table (is it an osbuilder image at all?), the
config and the target are all checked before the target is opened for writing; a real
disk is erased only after a yes; the config goes on only after the image verified, so a
failed flash never looks usable.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from osbuilder.host.flash.bootpart import write_config
from osbuilder.host.flash.extents import Piece, raw_pieces, read_exactly, stream_pieces
from osbuilder.host.flash.image_table import HEAD_BYTES, ImageTable, read_table
from osbuilder.host.flash.target_checks import PROC, SYS, BlockDevice, check_target
from osbuilder.host.flash.writer import Written, open_target, verify, write_pieces
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import Cancelled, CommandError, OsbError
from osbuilder.shared.run import output, stream

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class FlashResult:
    size: int
    data_bytes: int  # written from the image
    zeroed_bytes: int  # holes the target had to read as zeros
    sha256: str  # of every byte written or zeroed, read back, in order
    config_offset: int | None


def ask_stdin(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def is_zstd(image: Path) -> bool:
    return image.name.endswith(".zst")


def image_size(image: Path) -> int | None:
    """Bytes the image holds: the file's size, or the size a .zst frame records (None
    when the frame does not say, e.g. compressed from a pipe)."""
    if not is_zstd(image):
        return image.stat().st_size
    try:
        info = output(["zstd", "-lv", image])
    except CommandError as exc:
        raise OsbError(f"IMAGE {image}: not a readable zstd file:\n{exc.stderr_tail}") from exc
    m = re.search(r"Decompressed Size:.*\((\d+) B\)", info)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def open_image(image: Path, size: int | None) -> Iterator[tuple[ImageTable, Iterator[Piece]]]:
    """The image's partition table (checked) and its pieces, raw or decompressed."""
    if is_zstd(image):
        with stream(["zstd", "-dc", "-q", image]) as pipe:
            head = read_exactly(pipe, HEAD_BYTES)
            yield checked_table(image, head, size), stream_pieces(pipe, head)
            drain(pipe)
        return
    fd = os.open(image, os.O_RDONLY)
    try:
        head = os.pread(fd, HEAD_BYTES, 0)
        yield checked_table(image, head, size), raw_pieces(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def drain(pipe: IO[bytes]) -> None:
    while pipe.read(1 << 20):  # let zstd finish, so its exit status is known
        pass


def checked_table(image: Path, head: bytes, size: int | None) -> ImageTable:
    try:
        return read_table(head, size)
    except OsbError as exc:
        raise OsbError(f"IMAGE {image}: {exc}") from None


def flash(image: Path, device: Path, progress: Progress, config: Path | None = None,
          force: bool = False, yes: bool = False, confirm: Confirm = ask_stdin,
          sys_root: Path = SYS, proc_root: Path = PROC) -> FlashResult:
    from osbuilder.shared.nodeconfig.loader import check_file

    if not image.is_file():
        raise OsbError(f"IMAGE {image}: no such file (an .img or .img.zst from "
                       "`osbuilder build`)")
    if config is not None:
        if not config.is_file():
            raise OsbError(f"--config {config}: no such file")
        check_file(config, f"--config {config}")
    size = image_size(image)
    with open_image(image, size) as (table, pieces):
        dev = check_target(device, force, sys_root, proc_root)
        if dev is not None and size is not None and size > dev.size_bytes:
            raise OsbError(f"{image} needs {size / 1e9:.2f} GB, {device} has only "
                           f"{dev.size_bytes / 1e9:.2f} GB")
        what = f"{device} ({dev.describe()})" if dev else "file"
        if dev is not None and not yes and not confirm(f"erase {what}?"):
            raise Cancelled(f"{device}: left as it was")
        progress.say(f"flashing {image} ({table.kind}) to {device}: {what}")
        written = write_to(device, dev, pieces, table, progress, size)
    progress.say(f"    wrote {written.data_bytes / 1e6:.1f} MB, zeroed "
                 f"{written.zeroed_bytes / 1e6:.1f} MB, left {written.skipped_bytes / 1e6:.1f}"
                 " MB of empty slot space as it was")
    got = verify(str(device), written, progress)
    progress.say(f"    verified {(written.data_bytes + written.zeroed_bytes) / 1e6:.1f} MB, "
                 f"sha256 {got}")
    offset = None
    if config is not None:
        offset = write_config(device, config)
        progress.say(f"    {config} -> config.yaml on the boot partition")
    return FlashResult(written.size, written.data_bytes, written.zeroed_bytes, got, offset)


def write_to(device: Path, dev: BlockDevice | None, pieces: Iterator[Piece],
             table: ImageTable, progress: Progress, size: int | None) -> Written:
    with open_target(str(device), dev is not None, size) as target:
        return write_pieces(pieces, table, target, progress, size,
                            dev.size_bytes if dev else None)
