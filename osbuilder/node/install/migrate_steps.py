"""The migration's plan (from what was read) and its steps, each a method of Migration,
run in migrate_plan.steps order. The node's flow (migrate_k3os.py) gives it loop-device
regions and its own k3OS checks; the unit tests run the same steps on disk image files.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from osbuilder.bootloaders.systemd_boot.esp import populate_esp
from osbuilder.node.install import migrate_plan as mp
from osbuilder.node.install.k3os_disk import Extent, K3osDisk
from osbuilder.node.install.k3os_state import K3osState
from osbuilder.node.install.migrate_copy import measure, populate
from osbuilder.node.install.migrate_io import Regions, Say, zero
from osbuilder.node.install.table_commit import Written, commit
from osbuilder.shared.errors import OsbError
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import (
    ESP_TYPE,
    LABEL_BOOT,
    LABEL_DATA,
    LINUX_DATA_TYPE,
    MIB,
    SECTOR,
    DiskLayout,
    Partition,
    stable_uuid,
)
from osbuilder.shared.nodeconfig.source_text import parse_source

HEADER = ("# migrated from k3OS's /k3os/system/config.yaml by osbuilder-agent migrate-k3os,\n"
          "# in osbuilder's spelling; k3OS's file is k3os/config.yaml beside this one, and\n"
          "# /var/lib/rancher/k3os/config.yaml and config.d/ are read from the data partition\n")
ORIGINAL = "k3os/config.yaml"  # on the boot partition, never read by the agent


class Refused(OsbError):
    """The migration will not start; nothing was written."""


@dataclass(frozen=True)
class Prepared:
    disk: K3osDisk
    placement: mp.Placement
    plan: list[mp.Step]
    layout: DiskLayout
    data_files: int
    data_bytes: int

    def describe(self) -> str:
        rows = [f"  {label:<11} MiB {r.start:>6}-{r.end:<6} ({r.size} MiB)" for label, r in
                sorted(self.placement.partitions().items(), key=lambda kv: kv[1].start)]
        return (f"k3OS {self.disk.table.upper()} disk {self.disk.path} ({self.disk.mib} MiB) "
                "-> osbuilder GPT:\n" + "\n".join(rows) + f"\n  keeping {self.data_files} "
                f"files, {self.data_bytes / MIB:.0f} MiB (data file system "
                f"{self.placement.data_fs_mib} MiB, grown to its partition on the first boot)")


def new_layout(p: mp.Placement, root_type: str, disk_mib: int) -> DiskLayout:
    """The GPT of the migrated disk: the usual names, types and numbering (1 boot, 2 and 3
    the slots, 4 data) at the places p found; fresh UUIDs."""
    seed = str(uuid.uuid4())
    types = {LABEL_BOOT: ESP_TYPE, LABEL_DATA: LINUX_DATA_TYPE}
    return DiskLayout(stable_uuid(seed, "disk"), tuple(
        Partition(label, types.get(label, root_type), r.start, r.size, stable_uuid(seed, label))
        for label, r in p.partitions().items()), disk_mib)


def prepare(disk: K3osDisk, state: K3osState, dumpe2fs: str, plan: InstallPlan,
            image_bytes: int, skip_images: bool) -> Prepared:
    """The whole plan from what was read; Refused (nothing written) when it does not fit."""
    if disk.mib < plan.min_disk_mib:
        raise Refused(f"{disk.path}: {disk.mib} MiB is too small for the osbuilder A/B layout "
                      f"({plan.min_disk_mib} MiB: boot {plan.boot_mib}, two slots of "
                      f"{plan.root_mib}, data from {plan.data_mib})")
    tally = measure(state.data, skip_images)
    spans = mp.free_spans(disk, mp.free_blocks(dumpe2fs))
    if not mp.is_free(spans, disk.size - 33 * SECTOR, disk.size):
        raise Refused(f"{disk.path}: k3OS's file system uses the last sectors of the disk, "
                      "where the new partition table's backup copy goes")
    runs = mp.free_runs(spans, disk.mib)
    low = max([1, *(-(-e.end // MIB) for e in disk.esps)])
    try:
        placement = mp.place(disk.mib, low, runs, plan.boot_mib, plan.root_mib, plan.data_mib,
                             -(-image_bytes // MIB), tally.data_fs_mib(plan.data_mib))
    except mp.DoesNotFit as exc:
        hint = "" if skip_images else (" (--skip-images leaves container images behind: "
                                       "they are pulled again)")
        raise Refused(f"{disk.path}: {exc}{hint}") from None
    steps = mp.steps(placement)
    bad = mp.check(placement, steps, runs, disk.mib)
    if bad:  # a bug, never a property of the disk: refuse rather than write
        raise Refused(f"{disk.path}: the migration plan breaks its own rules: {'; '.join(bad)}")
    return Prepared(disk, placement, steps, new_layout(placement, plan.root_part_type,
                                                       disk.mib), tally.files, tally.bytes)


def boot_configs(state: K3osState) -> dict[str, bytes]:
    """config.yaml (k3OS's system config in osbuilder's spelling, without install:) and
    k3OS's file as it was, for the new boot partition."""
    data = dict(parse_source(state.system_config, "/k3os/system/config.yaml").data
                if state.system_config else {})
    block = data.get("k3os")
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "install"}
        data["k3os"] = block
        if not block:
            del data["k3os"]
    text = HEADER + (yaml.safe_dump(data, sort_keys=False) if data else "{}\n")
    out = {"config.yaml": text.encode()}
    if state.system_config is not None:
        out[ORIGINAL] = state.system_config
    return out


@dataclass(frozen=True)
class Inputs:
    p: Prepared
    state: K3osState
    regions: Regions
    squashfs: Path  # slot A's image: the live system's root
    plan: InstallPlan
    image_root: Path  # the image's files (the live system's /): kernel, systemd-boot
    rancher: tuple[int, int]  # uid and gid of the image's rancher
    skip_images: bool
    scratch: Path  # room for a sparse file of the disk's size (the new table)
    say: Say


class Migration:
    """The steps of one migration; a subclass (the node's) adds what only a running
    machine has: unmounting k3OS before its check, the kernel's partition table, UEFI."""

    def __init__(self, inputs: Inputs) -> None:
        self.i = inputs
        self.p, self.state, self.say = inputs.p, inputs.state, inputs.say
        self.when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.table_written: Written = lambda _what: None  # after each part of the new table

    def run(self, done: Callable[[mp.Step], None] = lambda _s: None) -> None:
        for step in self.p.plan:
            span = step.span.bytes() if step.span else None
            if span is not None:
                getattr(self, step.kind.replace("-", "_"))(span)
            else:
                getattr(self, step.kind.replace("-", "_"))()
            done(step)

    def data(self, span: Extent) -> None:
        self.say(f"copying k3OS's data ({self.p.data_bytes / MIB:.0f} MiB) into the new data "
                 "file system, in space k3OS does not use")

        def fill(mnt: Path) -> None:
            populate(self.state, mnt, self.i.rancher, self.i.skip_images, self.when)

        self.i.regions.make_data(span, fill, self.p.placement.data.bytes().size)

    def root_a(self, span: Extent) -> None:
        self.i.regions.write_image(span, self.i.squashfs, self.say)

    def boot(self, span: Extent) -> None:
        configs = boot_configs(self.state)

        def fill(mnt: Path) -> None:
            plan = self.i.plan
            populate_esp(mnt, self.i.image_root, plan.efi_arch, plan.kernel_version,
                         plan.version, plan.kernel_options)
            for rel, blob in configs.items():
                (mnt / rel).parent.mkdir(parents=True, exist_ok=True)
                (mnt / rel).write_bytes(blob)

        self.i.regions.make_boot(span, fill)

    def check_k3os(self) -> None:
        """Raise if k3OS's file system changed (the node's: e2fsck after unmounting)."""

    def commit(self) -> None:
        self.say("writing the new partition table (the switch: k3OS's stays valid until the "
                 "new one is whole)")
        commit(self.p.disk.path, self.p.disk.table, self.p.layout, self.p.disk.size,
               self.i.scratch, self.table_written)

    def wipe_b(self, span: Extent) -> None:
        """k3OS's old bytes at the start of slot B (an ext4 or FAT signature) would make it
        look like a file system to blkid and firmware: zeroed."""
        zero(self.p.disk.path, span)

    def boot_entry(self) -> None:
        """The UEFI boot entry (the node's)."""
