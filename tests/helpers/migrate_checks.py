"""Judging a disk during a k3OS migration: does it boot k3OS with its data unchanged, or a
complete osbuilder? (The unit power-cut test and the QEMU one share these.) Read-only:
sfdisk, e2fsck -n, debugfs and mtools on the image file."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from osbuilder.node.install import migrate_plan as mp
from osbuilder.node.install.k3os_disk import K3osDisk
from osbuilder.shared.layout import MIB
from tests.helpers.image import fat_read, partitions
from tests.helpers.k3os_disk import K3osNode, debugfs_read


@dataclass
class K3osView:
    """What must stay as it was for k3OS to boot with its data unchanged."""

    table: list[tuple[int, int, str]]
    used: str  # digest of every block K3OS_STATE uses, its ESPs, and (MBR) GRUB's sectors


def used_digest(disk: Path, d: K3osDisk, blocks: list[tuple[int, int]], mbr: bool) -> str:
    h = hashlib.sha256()
    spans = [(d.state.start + a * d.fs.block_size, d.state.start + (b + 1) * d.fs.block_size)
             for a, b in _used(blocks, d.fs.blocks)]
    spans += [(e.start, e.end) for e in d.esps] + ([(0, MIB)] if mbr else [(34 * 512, MIB)])
    with disk.open("rb") as f:
        for s, e in spans:
            f.seek(s)
            h.update(f.read(e - s))
    return h.hexdigest()


def _used(free: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    out, at = [], 0
    for a, b in sorted(free):
        if a > at:
            out.append((at, a - 1))
        at = b + 1
    if at < total:
        out.append((at, total - 1))
    return out


def table_of(disk: Path) -> list[tuple[int, int, str]]:
    return [(p.start, p.size, p.name) for p in partitions(disk)[1]]


def boots_k3os(disk: Path, d: K3osDisk, view: K3osView, blocks: list[tuple[int, int]]
               ) -> bool:
    if table_of(disk) != view.table:
        return False
    assert used_digest(disk, d, blocks, d.table == "dos") == view.used, \
        "k3OS's table is in force but its used bytes changed"
    r = subprocess.run(["e2fsck", "-f", "-n", f"{disk}?offset={d.state.start}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    return True


def boots_osbuilder(disk: Path, p: mp.Placement | None, node: K3osNode) -> bool:
    """osbuilder's table is in force (False if not), and then everything it points at is
    whole (asserted): the loader and slot A's entry, slot A's squashfs, the data file
    system with the node's password and token; at p's places when p is given."""
    label, parts = partitions(disk)
    if label != "gpt" or [x.name for x in parts] != ["OSB_BOOT", "OSB_ROOT_A", "OSB_ROOT_B",
                                                     "OSB_DATA"]:
        return False
    if p is not None:
        assert [(x.start, x.size) for x in parts] == [(r.start * MIB, r.size * MIB)
                                                      for r in p.partitions().values()]
    assert fat_read(disk, parts[0], "EFI/BOOT/BOOTX64.EFI").startswith(b"MZ")
    assert b"OSB_ROOT_A" in fat_read(disk, parts[0], "loader/entries/osb-a.conf")
    with disk.open("rb") as f:
        f.seek(parts[1].start)
        assert f.read(4) == b"hsqs"
    data = parts[3].start
    r = subprocess.run(["e2fsck", "-f", "-n", f"{disk}?offset={data}"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout
    assert debugfs_read(disk, data, "/etc/rancher/node/password") == node.node_password
    assert debugfs_read(disk, data, "/var/lib/rancher/k3s/server/token") == node.token + b"\n"
    return True


def k3os_view(disk: Path) -> tuple[K3osDisk, list[tuple[int, int]], K3osView]:
    """The k3OS disk as it is now: its layout, K3OS_STATE's free blocks, what must stay."""
    from osbuilder.node.install.migrate_io import read_disk

    d = read_disk(str(disk))
    free = subprocess.run(["dumpe2fs", f"{disk}?offset={d.state.start}"], capture_output=True,
                          text=True, check=True).stdout
    blocks = mp.free_blocks(free)
    return d, blocks, K3osView(table_of(disk), used_digest(disk, d, blocks, d.table == "dos"))
