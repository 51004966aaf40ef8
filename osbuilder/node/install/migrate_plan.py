"""Where a k3OS disk's new osbuilder partitions go, and in which order they are written
(pure: no I/O). docs/architecture-notes.md "In-place migration from k3OS" explains why.

Until the partition table changes, k3OS must boot with its data unchanged; after, the
disk must boot osbuilder. So everything the new table points at is written first, and
only into space k3OS does not use: free blocks of the K3OS_STATE file system (its block
bitmap), space past that file system's end, and space outside k3OS's partitions. The
table is written last, in an order where a cut leaves either table valid. Slot B needs
no content before an upgrade writes it whole, so it may lie over k3OS's used blocks;
slot A only needs free space for the image at its start; the boot partition and the
data file system need free runs of their whole size. The data partition is the highest
and reaches the end of the disk, so its ext4 grows to fill it on the first boot; the
others take the order that leaves it largest (their table numbers stay 1 boot, 2 and 3
the slots, 4 data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise, permutations

from osbuilder.node.install.k3os_disk import Extent, K3osDisk
from osbuilder.shared.layout import LABEL_BOOT, LABEL_DATA, MIB, SECTOR, root_label

PHASE_FREE, PHASE_SWITCH, PHASE_AFTER = 1, 2, 3


class DoesNotFit(Exception):
    """The new layout cannot be placed without touching what k3OS uses; why."""


@dataclass(frozen=True, order=True)
class Region:
    """A range of whole MiB of the disk."""

    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def bytes(self) -> Extent:
        return Extent(self.start * MIB, self.size * MIB)


def free_blocks(dumpe2fs: str) -> list[tuple[int, int]]:
    """(first, last) block ranges of `Free blocks:` lines in dumpe2fs's group listing."""
    out = []
    for line in dumpe2fs.splitlines():
        m = re.match(r"\s+Free blocks: (.*)$", line)
        if not m:
            continue
        for item in m.group(1).split(","):
            item = item.strip()
            if not item:
                continue
            first, _, last = item.partition("-")
            out.append((int(first), int(last or first)))
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s:
            out.append((s, e))
    return out


def free_spans(disk: K3osDisk, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) byte ranges k3OS does not use: free blocks of K3OS_STATE (as its
    bitmap says), its partition past the file system's end, and space outside k3OS's
    partitions."""
    bs, st = disk.fs.block_size, disk.state
    spans = [(st.start + a * bs, st.start + (b + 1) * bs) for a, b in blocks]
    spans.append((st.start + disk.fs.blocks * bs, st.end))
    cursor = 0
    for e in sorted([st, *disk.esps], key=lambda e: e.start):
        spans.append((cursor, e.start))
        cursor = max(cursor, e.end)
    spans.append((cursor, disk.size))
    return _merge(spans)


def free_runs(spans: list[tuple[int, int]], disk_mib: int) -> list[Region]:
    """The whole MiB of free_spans, as runs; never the first MiB (the partition table, and
    GRUB's core.img on MBR disks) nor the last (the backup table)."""
    runs = []
    for s, e in spans:
        first, last = max(-(-s // MIB), 1), min(e // MIB, disk_mib - 1)
        if last > first:
            runs.append(Region(first, last - first))
    return runs


def is_free(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _fit(runs: list[Region], start: int, need: int) -> int | None:
    """The lowest MiB >= start where `need` MiB lie inside one free run."""
    for r in runs:
        at = max(start, r.start)
        if at + need <= r.end:
            return at
    return None


@dataclass(frozen=True)
class Placement:
    boot: Region
    root_a: Region
    root_b: Region
    data: Region  # the partition: to the end of the disk (less the backup table's MiB)
    image_mib: int  # slot A's image, written at the start of root_a
    data_fs_mib: int  # the data file system as written; grown to `data` on first boot

    def partitions(self) -> dict[str, Region]:
        """In table order (boot, A, B, data), as every osbuilder disk numbers them."""
        return {LABEL_BOOT: self.boot, root_label("a"): self.root_a,
                root_label("b"): self.root_b, LABEL_DATA: self.data}

    def writes(self) -> dict[str, Region]:
        """What is written before the table: each lies in space k3OS does not use."""
        return {"data": Region(self.data.start, self.data_fs_mib),
                "root-a": Region(self.root_a.start, self.image_mib), "boot": self.boot}


def place(disk_mib: int, low_mib: int, runs: list[Region], boot_mib: int, root_mib: int,
          data_mib: int, image_mib: int, data_fs_mib: int) -> Placement:
    """Slot B, the boot partition and slot A from `low_mib` on (just after k3OS's ESP) in
    the order that leaves the data partition largest, then data to the end of the disk.
    Slot B goes wherever the order puts it (its bytes need not be free), the boot
    partition and slot A's image at the first free runs that hold them. Raises
    DoesNotFit naming the run that is missing."""
    if image_mib > root_mib:
        raise DoesNotFit(f"slot A's image ({image_mib} MiB) is larger than a slot "
                         f"({root_mib} MiB)")
    need_fs = max(data_fs_mib, 1)
    best: Placement | None = None
    missing: set[str] = set()
    for order in permutations(("b", "boot", "a")):
        cursor, got = low_mib, {}
        for what in order:
            need = {"b": 0, "boot": boot_mib, "a": image_mib}[what]
            at = cursor if what == "b" else _fit(runs, cursor, need)
            if at is None:
                missing.add(f"{need} MiB of free space in one piece for the "
                            f"{'boot partition' if what == 'boot' else 'image of slot A'}")
                break
            got[what] = Region(at, boot_mib if what == "boot" else root_mib)
            cursor = got[what].end
        else:
            at = _fit(runs, cursor, need_fs)
            if at is None or disk_mib - 1 - at < max(data_mib, need_fs):
                missing.add(f"{need_fs} MiB of free space in one piece for the data file "
                            "system")
                continue
            cand = Placement(got["boot"], got["a"], got["b"], Region(at, disk_mib - 1 - at),
                             image_mib, data_fs_mib)
            if best is None or cand.data.size > best.data.size:
                best = cand
    if best is None:
        largest = max((r.size for r in runs), default=0)
        raise DoesNotFit(f"no room for the osbuilder partitions without touching k3OS's data: "
                         f"needs {' and '.join(sorted(missing))} (the largest free run is "
                         f"{largest} MiB)")
    return best


@dataclass(frozen=True)
class Step:
    kind: str  # data, root-a, boot, check-k3os, commit, wipe-b, boot-entry
    phase: int  # PHASE_FREE, PHASE_SWITCH or PHASE_AFTER
    span: Region | None  # what the step writes (phase 1 and cleanup), in MiB


def steps(p: Placement) -> list[Step]:
    """The migration in order. Phase 1 writes only into k3OS's free space (the data first:
    the longest and the one that can run out of room); k3OS is then checked unchanged; the
    table is the switch; afterwards only the new partitions are touched."""
    w = p.writes()
    return [Step("data", PHASE_FREE, w["data"]), Step("root-a", PHASE_FREE, w["root-a"]),
            Step("boot", PHASE_FREE, w["boot"]), Step("check-k3os", PHASE_FREE, None),
            Step("commit", PHASE_SWITCH, None),
            Step("wipe-b", PHASE_AFTER, Region(p.root_b.start, 1)),
            Step("boot-entry", PHASE_AFTER, None)]


def check(p: Placement, plan: list[Step], runs: list[Region], disk_mib: int) -> list[str]:
    """The ordering invariants; [] when the plan keeps them (the orchestrator refuses a
    plan that does not, and the unit tests try many)."""
    bad = []
    parts = sorted(p.partitions().items(), key=lambda kv: kv[1].start)
    for (n1, r1), (n2, r2) in pairwise(parts):
        if r1.end > r2.start:
            bad.append(f"{n1} and {n2} overlap")
    if parts[0][1].start < 1 or parts[-1][1].end > disk_mib - 1:
        bad.append("a partition lies in the first or last MiB")
    if parts[-1][0] != LABEL_DATA:
        bad.append("the data partition is not the last one (it could not grow)")
    free = [(r.start, r.end) for r in runs]
    inside = {"data": p.data, "root-a": p.root_a, "boot": p.boot}
    seen_switch = False
    for s in plan:
        if s.phase == PHASE_SWITCH:
            seen_switch = True
        elif s.phase == PHASE_FREE and seen_switch:
            bad.append(f"{s.kind} writes into k3OS's space after the table changed")
        if s.phase == PHASE_FREE and s.span is not None:
            if not any(a <= s.span.start and s.span.end <= b for a, b in free):
                bad.append(f"{s.kind} writes MiB {s.span.start}-{s.span.end}, "
                           "which k3OS uses")
            home = inside[s.kind]
            if not (home.start <= s.span.start and s.span.end <= home.end):
                bad.append(f"{s.kind} writes outside its partition")
        if s.phase == PHASE_AFTER and s.span is not None and not any(
                r.start <= s.span.start and s.span.end <= r.end for _, r in parts):
            bad.append(f"{s.kind} writes outside the new partitions")
    spans = sorted(s.span for s in plan if s.phase == PHASE_FREE and s.span)
    for a, b in pairwise(spans):
        if a.end > b.start:
            bad.append(f"writes at MiB {a.start} and {b.start} overlap")
    if [s.phase for s in plan] != sorted(s.phase for s in plan):
        bad.append("phases out of order")
    if sum(s.phase == PHASE_SWITCH for s in plan) != 1:
        bad.append("the table must change exactly once")
    return bad


def gpt_order(old_table: str, disk_size: int, entries_lba: int, entries_sectors: int
              ) -> list[tuple[str, int, int]]:
    """(what, offset, length) of the new GPT's sectors, in the order they are written.

    The backup copy first (at the end of the disk: on GPT it replaces k3OS's backup
    while k3OS's primary stays valid and is what firmware, GRUB and Linux read; on MBR
    the end is free space of K3OS_STATE, checked by the plan), then the primary: entries
    before header, so until the header is whole the primary fails its CRC and readers
    take the new backup. On MBR disks the protective MBR goes before the primary: GRUB's
    core.img sits in sectors 1-33 and k3OS must keep booting until sector 0 changes."""
    backup_entries = disk_size - (entries_sectors + 1) * SECTOR
    spans = {"backup entries": (backup_entries, entries_sectors * SECTOR),
             "backup header": (disk_size - SECTOR, SECTOR),
             "primary entries": (entries_lba * SECTOR, entries_sectors * SECTOR),
             "primary header": (SECTOR, SECTOR),
             "protective MBR": (0, SECTOR)}
    order = (["backup entries", "backup header", "primary entries", "primary header",
              "protective MBR"] if old_table == "gpt" else
             ["backup entries", "backup header", "protective MBR", "primary entries",
              "primary header"])
    return [(name, *spans[name]) for name in order]
