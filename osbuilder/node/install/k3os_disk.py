"""Recognise a disk that k3OS's installer laid out, from its partition table and the
superblocks of its file systems (read, never written).

rancher/k3os@8cdfdf2 install.sh `do_format` makes one of two layouts:
- UEFI (`/sys/firmware/efi` or `--force-efi`: GPT): partition 1 `mkpart primary fat32 0% 50MB`
  with the `esp` flag, `mkfs.vfat -F 32` + `fatlabel K3OS_GRUB`; partition 2
  `mkpart primary ext4 50MB 750MB`, `mkfs.ext4 -F -L K3OS_STATE`;
- BIOS (MBR, `msdos`): partition 1 `mkpart primary ext4 0% 700MB`, `boot` flag,
  `mkfs.ext4 -F -L K3OS_STATE`.
The first boot grows K3OS_STATE to the end of the disk (`k3os/system/growpart`,
overlay/libexec/k3os/mode-disk `grow`: `parted resizepart N 100%`, `resize2fs`), and
`--no-format` installs put K3OS_STATE on a partition the user made. So: any GPT or MBR
disk whose only partitions are one ext4 K3OS_STATE and, on GPT, FAT K3OS_GRUB ESPs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from osbuilder.shared.layout import LABEL_BOOT, LABEL_DATA, MIB, SECTOR, root_label

STATE_LABEL = "K3OS_STATE"
GRUB_LABEL = "K3OS_GRUB"
OSB_NAMES = (LABEL_BOOT, root_label("a"), root_label("b"), LABEL_DATA)

EXT4_MAGIC = 0xEF53
EXT4_VALID_FS = 0x1  # s_state: cleanly unmounted
EXT4_ERROR_FS = 0x2
INCOMPAT_RECOVER = 0x4  # the journal holds transactions not yet written home
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_64BIT = 0x80

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes of the disk


class NotK3os(Exception):
    """The disk is not one k3OS laid out (or not one this migration can take); why."""


@dataclass(frozen=True)
class Extent:
    """A byte range of the disk."""

    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Ext4Super:
    label: str
    block_size: int
    blocks: int
    clean: bool  # unmounted cleanly, no errors recorded
    needs_recovery: bool  # its journal must be replayed (mounting does that)


@dataclass(frozen=True)
class K3osDisk:
    path: str
    size: int  # bytes
    table: str  # "gpt" or "dos", as sfdisk names it
    state: Extent  # the K3OS_STATE partition
    state_number: int
    fs: Ext4Super
    esps: tuple[Extent, ...]  # K3OS_GRUB partitions (GPT): k3OS boots through them

    @property
    def mib(self) -> int:
        return self.size // MIB


def ext4_super(raw: bytes) -> Ext4Super | None:
    """An ext2/3/4 superblock (the 1024 bytes at offset 1024 of the file system)."""
    if len(raw) < 1024:
        return None
    magic, state = struct.unpack_from("<HH", raw, 56)
    if magic != EXT4_MAGIC:
        return None
    blocks_lo, = struct.unpack_from("<I", raw, 4)
    log_bs, = struct.unpack_from("<I", raw, 24)
    incompat, = struct.unpack_from("<I", raw, 96)
    blocks_hi = struct.unpack_from("<I", raw, 0x150)[0] if incompat & INCOMPAT_64BIT else 0
    if log_bs > 6 or incompat & INCOMPAT_JOURNAL_DEV:
        return None  # a block size ext4 never makes, or a journal device: not a file system
    label = raw[120:136].split(b"\0", 1)[0].decode("latin-1")
    return Ext4Super(label=label, block_size=1024 << log_bs,
                     blocks=blocks_lo | (blocks_hi << 32),
                     clean=bool(state & EXT4_VALID_FS) and not state & EXT4_ERROR_FS,
                     needs_recovery=bool(incompat & INCOMPAT_RECOVER))


def fat_label(boot_sector: bytes) -> str | None:
    """The volume label of a FAT32 boot sector (fatlabel writes it there), else None."""
    if len(boot_sector) < 512 or boot_sector[510:512] != b"\x55\xaa":
        return None
    if boot_sector[0x52:0x5A] != b"FAT32   ":
        return None
    return boot_sector[0x47:0x52].decode("latin-1").rstrip()


def _describe(p: dict[str, Any], number: int) -> str:
    name = f" '{p['name']}'" if p.get("name") else ""
    return f"partition {number}{name} (type {p.get('type', '?')})"


def recognise(table: dict[str, Any], size: int, read_at: ReadAt, path: str) -> K3osDisk:
    """The k3OS layout of a disk from `sfdisk --json`'s partitiontable and its bytes;
    raises NotK3os saying what differs."""
    label = table.get("label")
    if label not in ("gpt", "dos"):
        raise NotK3os(f"{path}: partition table {label or 'none'}, k3OS uses GPT or MBR")
    if table.get("sectorsize", SECTOR) != SECTOR:
        raise NotK3os(f"{path}: {table.get('sectorsize')}-byte sectors; the osbuilder layout "
                      f"is written for {SECTOR}-byte sectors")
    parts = [p for p in table.get("partitions") or [] if isinstance(p, dict)]
    names = [str(p.get("name", "")) for p in parts]
    if any(n in OSB_NAMES for n in names):
        raise NotK3os(f"{path}: already an osbuilder disk (partitions "
                      f"{', '.join(n for n in names if n)}): nothing to migrate")
    state: tuple[int, Extent, Ext4Super] | None = None
    esps: list[Extent] = []
    foreign: list[str] = []
    for number, p in enumerate(parts, 1):
        ext = Extent(int(p["start"]) * SECTOR, int(p["size"]) * SECTOR)
        if ext.end > size:
            raise NotK3os(f"{path}: {_describe(p, number)} ends past the end of the disk")
        if label == "dos" and str(p.get("type", "")).lower() in ("5", "f", "85"):
            foreign.append(_describe(p, number) + ": an extended partition")
            continue
        sb = ext4_super(read_at(ext.start + 1024, 1024)) if ext.size >= 2048 else None
        if sb is not None and sb.label == STATE_LABEL:
            if state is not None:
                raise NotK3os(f"{path}: two {STATE_LABEL} file systems (partitions "
                              f"{state[0]} and {number}); which one boots is unclear")
            state = (number, ext, sb)
        elif label == "gpt" and fat_label(read_at(ext.start, 512)) == GRUB_LABEL:
            esps.append(ext)
        else:
            what = f"ext4 '{sb.label}'" if sb else "not k3OS's"
            foreign.append(f"{_describe(p, number)}: {what}")
    if state is None:
        raise NotK3os(f"{path}: no ext4 file system labelled {STATE_LABEL}: not a k3OS disk")
    if foreign:
        raise NotK3os(f"{path}: holds partitions k3OS's installer does not make, which the "
                      f"migration would erase: {'; '.join(foreign)}")
    number, ext, sb = state
    if sb.blocks * sb.block_size > ext.size:
        raise NotK3os(f"{path}: the {STATE_LABEL} file system is larger than its partition "
                      f"{number} ({sb.blocks * sb.block_size} > {ext.size} bytes)")
    return K3osDisk(path=path, size=size, table=label, state=ext, state_number=number,
                    fs=sb, esps=tuple(esps))


def install_hint(signatures: tuple[str, ...]) -> str | None:
    """What `install` adds when it refuses a disk that holds k3OS (blkid's findings)."""
    if any(s.endswith(f"ext4 '{STATE_LABEL}'") for s in signatures):
        return ("it holds k3OS: `osbuilder-agent migrate-k3os` (the live system's migrate "
                "entry, osb.mode=migrate) keeps its k3s state")
    return None


def inspect(path: str, sfdisk_json: bytes, size: int, read_at: ReadAt) -> K3osDisk:
    """recognise() from sfdisk's raw JSON (empty when sfdisk found no table)."""
    try:
        table = json.loads(sfdisk_json or b"{}").get("partitiontable", {})
    except ValueError as exc:
        raise NotK3os(f"{path}: unreadable partition table ({exc})") from None
    return recognise(table if isinstance(table, dict) else {}, size, read_at, path)
