"""A/B disk layout as data, and its partition-table arithmetic (pure; no I/O).

Every partition starts on a 1 MiB boundary; the image ends 1 MiB after the last
partition so the GPT backup header fits. UUIDs are derived from a seed so the same
inputs give the same partition table bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

SECTOR = 512
MIB = 1024 * 1024
ALIGN_MIB = 1
GPT_TAIL_MIB = 1  # room for the 33-sector backup GPT, rounded to the alignment

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_DATA_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"

LABEL_BOOT = "OSB_BOOT"
# on the boot partition, osb/<slot>/ holds each slot's kernel, initrd (and device trees)
SLOT_DIR = "osb"
LABEL_DATA = "OSB_DATA"
SLOTS = ("a", "b")
BOOT_TRIES = 3  # boots a freshly installed slot gets to pass its health gate


# MBR has no partition names: its partitions are found by PARTUUID, "<disk id>-<number>".
# The disk id is the same on every osbuilder MBR disk because the files that name root
# devices (the slot's kernel command line, RAUC's system.conf) come from the image being
# installed, not from the disk they land on.
MBR_DISK_ID = "6f736231"  # "osb1"
MBR_FAT_TYPE = "c"  # W95 FAT32 (LBA): what the Pi boot ROM looks for
MBR_LINUX_TYPE = "83"


def root_label(slot: str) -> str:
    return f"OSB_ROOT_{slot.upper()}"


def mbr_partuuid(number: int) -> str:
    return f"{MBR_DISK_ID}-{number:02x}"


def root_device(table: str, slot: str) -> str:
    """The slot's root as the kernel's root= and udev's /dev/disk/by-* name it."""
    if table == "mbr":
        return f"PARTUUID={mbr_partuuid(2 + SLOTS.index(slot))}"
    return f"PARTLABEL={root_label(slot)}"


def root_device_path(table: str, slot: str) -> str:
    kind, _, value = root_device(table, slot).partition("=")
    return f"/dev/disk/by-{kind.lower()}/{value}"


@dataclass(frozen=True)
class Partition:
    label: str
    type_uuid: str
    start_mib: int
    size_mib: int
    part_uuid: str

    @property
    def start_bytes(self) -> int:
        return self.start_mib * MIB

    @property
    def size_bytes(self) -> int:
        return self.size_mib * MIB

    @property
    def end_mib(self) -> int:
        return self.start_mib + self.size_mib


@dataclass(frozen=True)
class DiskLayout:
    disk_uuid: str
    partitions: tuple[Partition, ...]
    total_mib: int
    table: str = "gpt"  # or "mbr": then disk_uuid is the 8-hex-digit disk id

    @property
    def total_bytes(self) -> int:
        return self.total_mib * MIB

    def by_label(self, label: str) -> Partition:
        for p in self.partitions:
            if p.label == label:
                return p
        raise KeyError(label)

    def index_of(self, label: str) -> int:
        """1-based partition number, as the kernel names it (vda2, mmcblk0p2)."""
        return [p.label for p in self.partitions].index(label) + 1

    def sfdisk_script(self) -> str:
        if self.table == "mbr":
            return self._mbr_script()
        lines = [
            "label: gpt",
            f"label-id: {self.disk_uuid.upper()}",
            "unit: sectors",
            f"first-lba: {ALIGN_MIB * MIB // SECTOR}",
            f"sector-size: {SECTOR}",
            "",
        ]
        for p in self.partitions:
            lines.append(
                f"start={p.start_mib * MIB // SECTOR}, size={p.size_mib * MIB // SECTOR}, "
                f"type={p.type_uuid.upper()}, uuid={p.part_uuid.upper()}, name=\"{p.label}\""
            )
        return "\n".join(lines) + "\n"

    def _mbr_script(self) -> str:
        if len(self.partitions) > 4:
            raise ValueError("an MBR disk holds at most 4 primary partitions")
        lines = ["label: dos", f"label-id: 0x{self.disk_uuid}", "unit: sectors", ""]
        for i, p in enumerate(self.partitions):
            boot = ", bootable" if i == 0 else ""
            lines.append(f"start={p.start_mib * MIB // SECTOR}, size={p.size_mib * MIB // SECTOR}, "
                         f"type={p.type_uuid}{boot}")
        return "\n".join(lines) + "\n"


def stable_uuid(seed: str, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"osbuilder:{seed}:{what}"))


def plan_layout(sizes: list[tuple[str, str, int]], seed: str) -> DiskLayout:
    """Lay partitions (label, type, MiB) back to back from 1 MiB, each aligned."""
    if not sizes:
        raise ValueError("a disk needs at least one partition")
    parts = []
    cursor = ALIGN_MIB
    for label, type_uuid, size_mib in sizes:
        if size_mib <= 0:
            raise ValueError(f"partition {label}: size must be positive, got {size_mib} MiB")
        parts.append(Partition(label, type_uuid, cursor, size_mib, stable_uuid(seed, label)))
        cursor += -(-size_mib // ALIGN_MIB) * ALIGN_MIB
    return DiskLayout(stable_uuid(seed, "disk"), tuple(parts), cursor + GPT_TAIL_MIB)


def ab_layout_of(boot_mib: int, root_mib: int, data_mib: int, root_part_type: str, seed: str,
                 table: str = "gpt") -> DiskLayout:
    """The A/B layout of DESIGN.md: boot/ESP, root A, root B, data (last, so it can grow).
    Also what `osbuilder-agent install` lays out on a node's disk.

    MBR boards get the same four partitions as primaries, so the data partition is the
    last one of the disk and grows like on GPT."""
    mbr = table == "mbr"
    layout = plan_layout(
        [
            (LABEL_BOOT, MBR_FAT_TYPE if mbr else ESP_TYPE, boot_mib),
            (root_label("a"), MBR_LINUX_TYPE if mbr else root_part_type, root_mib),
            (root_label("b"), MBR_LINUX_TYPE if mbr else root_part_type, root_mib),
            (LABEL_DATA, MBR_LINUX_TYPE if mbr else LINUX_DATA_TYPE, data_mib),
        ],
        seed,
    )
    if mbr:
        return replace(layout, disk_uuid=MBR_DISK_ID, table="mbr")
    return layout
