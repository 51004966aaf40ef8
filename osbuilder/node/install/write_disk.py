"""Write the A/B layout onto a disk from the running live system.

Order matters for a half-finished install: the partition table, slot A and the data
file system first, the ESP last, so a disk only becomes bootable once everything else is
on it. Partition GUIDs come from a fresh seed: every installed disk is its own.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from osbuilder.bootloaders.systemd_boot.esp import populate_esp
from osbuilder.node.install.disks import partition_path, wait_for_block
from osbuilder.shared.errors import OsbError
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import LABEL_BOOT, LABEL_DATA, MIB, DiskLayout, root_label
from osbuilder.shared.run import run

CHUNK = 4 * MIB
BOOT_ENTRY = "osbuilder"
Say = Callable[[str], None]


def existing_partitions(disk: str, layout: DiskLayout) -> dict[str, tuple[str, int]]:
    """install.no_format: the disk's partitions by name, which must be ours, in order."""
    r = run(["sfdisk", "--json", disk], capture=True, check=False)
    table = json.loads(r.stdout or b"{}").get("partitiontable", {}) if r.returncode == 0 else {}
    sector = table.get("sectorsize", 512)
    found = [(p.get("name", ""), p["node"], p["size"] * sector)
             for p in table.get("partitions", [])]
    want = [p.label for p in layout.partitions]
    if [name for name, _, _ in found][:len(want)] != want:
        raise OsbError(f"install.no_format: {disk} does not hold the osbuilder layout "
                       f"(partitions {', '.join(want)}); found "
                       f"{', '.join(n or '(unnamed)' for n, _, _ in found) or 'none'}")
    return {name: (node, size) for name, node, size in found}


def partition(disk: str, layout: DiskLayout) -> dict[str, tuple[str, int]]:
    run(["sfdisk", "--quiet", "--wipe", "always", "--wipe-partitions", "always", disk],
        input=layout.sfdisk_script().encode())
    return {p.label: (partition_path(disk, i), p.size_bytes)
            for i, p in enumerate(layout.partitions, 1)}


def copy_image(src: Path, dest: str, room: int, say: Say) -> None:
    size = src.stat().st_size
    if size > room:
        raise OsbError(f"{src}: {size // MIB} MiB does not fit root slot {dest} "
                       f"({room // MIB} MiB)")
    started, done, shown = time.monotonic(), 0, 0.0
    with src.open("rb") as fin, open(dest, "r+b", buffering=0) as fout:
        while block := fin.read(CHUNK):
            fout.write(block)
            done += len(block)
            now = time.monotonic()
            if now - shown > 5:
                say(f"slot A: {done // MIB}/{size // MIB} MiB")
                shown = now
        os.fsync(fout.fileno())
    say(f"slot A: {size // MIB} MiB written in {time.monotonic() - started:.0f} s")


def write_esp(part: str, plan: InstallPlan, root: Path, configs: dict[str, str],
              make_fs: bool) -> None:
    if make_fs:
        run(["mkfs.vfat", "-F", "32", "-n", LABEL_BOOT, part])
    with tempfile.TemporaryDirectory(prefix="osb-esp-", dir="/run") as mnt:
        run(["mount", "-t", "vfat", part, mnt])
        try:
            populate_esp(Path(mnt), root, plan.efi_arch, plan.kernel_version, plan.version,
                         plan.kernel_options)
            for rel, text in configs.items():
                (Path(mnt) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(mnt) / rel).write_text(text)
        finally:
            run(["umount", mnt])


def add_boot_entry(disk: str, esp_number: int, efi_arch: str, say: Say) -> None:
    """Put the installed disk first in the firmware's boot order, as OS installers do:
    firmware that kept the old boot options (OVMF does) may never try a disk that was
    empty when they were made. Replaces our own entry of an earlier install. Not fatal:
    the disk still boots as removable media from EFI/BOOT."""
    loader = f"\\EFI\\BOOT\\BOOT{efi_arch.upper()}.EFI"
    try:
        listed = run(["efibootmgr"], capture=True).stdout.decode(errors="replace")
        for num in re.findall(rf"^Boot([0-9A-Fa-f]{{4}})\*? {BOOT_ENTRY}$", listed, re.M):
            run(["efibootmgr", "--quiet", "--bootnum", num, "--delete-bootnum"])
        run(["efibootmgr", "--quiet", "--create", "--disk", disk, "--part", str(esp_number),
             "--label", BOOT_ENTRY, "--loader", loader])
        say(f"UEFI boot entry '{BOOT_ENTRY}' added, first in the boot order")
    except OsbError as exc:
        say(f"warning: no UEFI boot entry ({exc}); the firmware must find "
            f"{loader} on {disk} by itself")


def install_disk(disk: str, plan: InstallPlan, squashfs: Path, configs: dict[str, str],
                 no_format: bool, say: Say, root: Path = Path("/"), efi: bool = True) -> None:
    """Lay out disk and write it; configs: ESP-relative path -> text."""
    layout = plan.layout(str(uuid.uuid4()))
    if no_format:
        parts = existing_partitions(disk, layout)
    else:
        say(f"partitioning {disk}: {', '.join(p.label for p in layout.partitions)}")
        parts = partition(disk, layout)
    wait_for_block([node for node, _ in parts.values()])
    slot_a, room = parts[root_label("a")]
    copy_image(squashfs, slot_a, room, say)
    if not no_format:
        run(["mkfs.ext4", "-q", "-F", "-L", LABEL_DATA, parts[LABEL_DATA][0]])
    write_esp(parts[LABEL_BOOT][0], plan, root, configs, make_fs=not no_format)
    run(["sync"])
    if efi:
        add_boot_entry(disk, layout.index_of(LABEL_BOOT), plan.efi_arch, say)
