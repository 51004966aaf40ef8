"""A power cut anywhere in a migration leaves a disk that boots k3OS with its data
unchanged, or boots osbuilder: the real steps (migrate_steps.Migration, table_commit) run
on k3OS-style disk images, GPT (UEFI install) and MBR (BIOS install), and at every step
boundary and after every one of the new table's five writes the disk is judged as it
stands, which is what a cut at that instant would leave. Within phase 1 every write is
confined to planned free space (checked: k3OS's used blocks, ESP and first MiB keep their
bytes), so a cut inside a step leaves what the step boundary before it left.

The region writes are loop-free here (tests/helpers/k3os_disk.FileRegions; the node uses
loop devices). "Boots" is judged as firmware and Linux read a disk: sfdisk's libfdisk, like
the UEFI spec and the kernel, takes the backup GPT when the primary fails its CRC.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from osbuilder.node.install import migrate_plan as mp
from osbuilder.node.install.k3os_state import read_state
from osbuilder.node.install.migrate_io import read_disk
from osbuilder.node.install.migrate_steps import Inputs, Migration, prepare
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import MIB
from tests.helpers.k3os_disk import (
    FileRegions,
    K3osNode,
    debugfs_read,
    image_root,
    make_disk,
    state_tree,
)
from tests.helpers.migrate_checks import (
    K3osView,
    boots_k3os,
    boots_osbuilder,
    table_of,
    used_digest,
)

GIB = 1 << 30
PLAN = InstallPlan("qemu-amd64", "1.0.0", "6.12.0-test-amd64", "x64", 256, 1024, 128,
                   "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "root=PARTLABEL=OSB_ROOT_A ro")


@pytest.mark.parametrize("style", ["gpt", "mbr"])
def test_every_cut_leaves_k3os_or_osbuilder(style: str, tmp_path: Path) -> None:
    node = K3osNode()
    tree = state_tree(tmp_path / "state", node)
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, style)
    d = read_disk(str(disk))
    free = subprocess.run(["dumpe2fs", f"{disk}?offset={d.state.start}"], capture_output=True,
                          text=True, check=True).stdout
    blocks = mp.free_blocks(free)
    view = K3osView(table_of(disk), used_digest(disk, d, blocks, style == "mbr"))
    squashfs = tmp_path / "root.squashfs"
    squashfs.write_bytes(b"hsqs" + bytes(20 * MIB))
    state = read_state(tree)
    prepared = prepare(d, state, free, PLAN, squashfs.stat().st_size, False)
    regions = FileRegions(disk, tmp_path)
    m = Migration(Inputs(prepared, state, regions, squashfs, PLAN,
                         image_root(tmp_path / "image"), (1001, 1001), False, tmp_path,
                         lambda _msg: None))
    seen: list[tuple[str, str]] = []

    def judge(where: str) -> None:
        k3os, osb = boots_k3os(disk, d, view, blocks), boots_osbuilder(disk, prepared.placement,
                                                                       node)
        assert k3os != osb, f"after {where}: boots k3OS {k3os}, osbuilder {osb}"
        seen.append((where, "k3OS" if k3os else "osbuilder"))

    m.table_written = lambda what: judge(f"table: {what}")
    judge("nothing")
    m.run(lambda step: judge(f"step {step.kind}"))
    # every phase-1 write stayed inside the free space the plan chose
    runs = mp.free_runs(mp.free_spans(d, blocks), d.mib)
    for s, e in regions.writes:
        assert any(r.start * MIB <= s and e <= r.end * MIB for r in runs), (s, e)
    switch = "table: primary header" if style == "gpt" else "table: protective MBR"
    where = [w for w, _ in seen]
    booted = [b for _, b in seen]
    first_osb = booted.index("osbuilder")
    assert booted == ["k3OS"] * first_osb + ["osbuilder"] * (len(seen) - first_osb)
    if style == "gpt":  # primary entries written: its header's CRC fails, the backup rules
        assert where[first_osb] == "table: primary entries"
    else:
        assert where[first_osb] == switch
    assert where[:first_osb] == ["nothing", "step data", "step root-a", "step boot",
                                 "step check-k3os", "table: backup entries",
                                 "table: backup header"]
    record = json.loads(debugfs_read(disk, prepared.placement.data.start * MIB,
                                     "/var/lib/osbuilder/migrated-from-k3os.json") or b"{}")
    assert record["datastore"] == "sqlite"
    print(f"\n{style}: " + ", ".join(f"{w} -> {b}" for w, b in seen))
