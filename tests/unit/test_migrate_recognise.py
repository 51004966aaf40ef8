"""Which disks `osbuilder-agent migrate-k3os` takes: disk images made in tmp the way k3OS's
installer makes them (tests/helpers/k3os_disk.py, from rancher/k3os@8cdfdf2 install.sh),
and the refusals (not k3OS, osbuilder already, foreign partitions, too small, no room),
all before anything is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from osbuilder.node.install import migrate_plan as mp
from osbuilder.node.install.k3os_disk import NotK3os, ext4_super, fat_label
from osbuilder.node.install.k3os_state import read_state
from osbuilder.node.install.migrate_io import read_disk
from osbuilder.node.install.migrate_steps import Refused, prepare
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import MIB
from tests.helpers.k3os_disk import K3osNode, digest, make_disk, state_tree

GIB = 1 << 30
PLAN = InstallPlan("qemu-amd64", "1.0.0", "6.12.0-test-amd64", "x64", 256, 1024, 128,
                   "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "root=PARTLABEL=OSB_ROOT_A")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_tree(tmp_path_factory.mktemp("k3os") / "state", K3osNode())


def sha(path: Path) -> str:
    return digest(path)


def dumpe2fs(disk: Path, offset: int) -> str:
    return subprocess.run(["dumpe2fs", f"{disk}?offset={offset}"], capture_output=True,
                          text=True, check=True).stdout


def test_gpt_layout_of_a_uefi_install_grown_on_first_boot(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    start, size = make_disk(disk, 4 * GIB, tree, "gpt")
    d = read_disk(str(disk))
    assert (d.table, d.state_number, d.state.start, d.state.size) == ("gpt", 2, start, size)
    assert d.esps[0].start == MIB and d.esps[0].end == 48 * MIB  # 0%-50MB, parted-aligned
    assert d.fs.label == "K3OS_STATE" and d.fs.block_size == 4096 and d.fs.clean
    assert d.fs.blocks * 4096 > 4000 * MIB  # resize2fs filled the grown partition


def test_mbr_layout_of_a_bios_install(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "mbr")
    d = read_disk(str(disk))
    assert (d.table, d.state_number, d.state.start, d.esps) == ("dos", 1, MIB, ())
    assert d.state.end == 4 * GIB  # resizepart 100%: to the last sector


def test_not_yet_grown_disk_has_the_rest_of_the_disk_free(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "gpt", grown=False)
    d = read_disk(str(disk))
    assert d.state.end == 715 * MIB  # mkpart 50MB 750MB, as parted aligns it
    runs = mp.free_runs(mp.free_spans(d, mp.free_blocks(dumpe2fs(disk, d.state.start))),
                        d.mib)
    # the free end of the file system and the unpartitioned rest make one run
    assert runs[-1].start < 715 and runs[-1].end == 4095


def refusal(disk: Path) -> str:
    with pytest.raises(NotK3os) as exc:
        read_disk(str(disk))
    return str(exc.value)


def test_refuses_a_disk_without_a_table_or_without_k3os(tree: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(8 * MIB))
    assert refusal(blank).endswith("partition table none, k3OS uses GPT or MBR")
    other = tmp_path / "other.img"
    make_disk(other, 4 * GIB, tree, "gpt")
    subprocess.run(["tune2fs", "-L", "data", f"{other}?offset={48 * MIB}"],
                   check=True, capture_output=True)
    assert "no ext4 file system labelled K3OS_STATE: not a k3OS disk" in refusal(other)


def test_refuses_an_osbuilder_disk(tmp_path: Path) -> None:
    disk = tmp_path / "osb.img"
    with disk.open("wb") as f:
        f.truncate(4 * GIB)
    layout = PLAN.layout("test")
    subprocess.run(["sfdisk", "-q", str(disk)], input=layout.sfdisk_script().encode(),
                   check=True)
    assert "already an osbuilder disk" in refusal(disk)


def test_refuses_partitions_k3os_does_not_make(tree: Path, tmp_path: Path) -> None:
    """A --no-format install next to the user's own partition: migrating would erase it."""
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "gpt", grown=False)
    subprocess.run(["sfdisk", "-q", "--append", str(disk)],
                   input=b"start=2097152, size=1048576, name=home\n", check=True)
    msg = refusal(disk)
    assert "holds partitions k3OS's installer does not make, which the migration would " \
           "erase: partition 3 'home'" in msg


def test_superblock_parsing_sees_an_unclean_journal() -> None:
    raw = bytearray(1024)
    raw[56:58] = (0xEF53).to_bytes(2, "little")
    raw[58:60] = (0).to_bytes(2, "little")  # mounted, not cleanly unmounted
    raw[24:28] = (2).to_bytes(4, "little")  # 4096-byte blocks
    raw[96:100] = (0x4 | 0x40).to_bytes(4, "little")  # needs_recovery, extents
    raw[120:130] = b"K3OS_STATE"
    sb = ext4_super(bytes(raw))
    assert sb is not None and sb.needs_recovery and not sb.clean and sb.block_size == 4096
    assert ext4_super(bytes(1024)) is None
    assert fat_label(bytes(512)) is None


def test_plan_of_a_4gib_k3os_disk_and_what_it_leaves_alone(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "gpt")
    before = sha(disk)
    d = read_disk(str(disk))
    p = prepare(d, read_state(tree), dumpe2fs(disk, d.state.start), PLAN, 300 * MIB, False)
    assert sha(disk) == before  # reading and planning wrote nothing
    parts = p.placement.partitions()
    assert parts["OSB_ROOT_B"].start == 48  # right after k3OS's ESP, over k3OS's files
    assert parts["OSB_DATA"].end == 4095
    assert [x.label for x in p.layout.partitions] == ["OSB_BOOT", "OSB_ROOT_A", "OSB_ROOT_B",
                                                      "OSB_DATA"]


def test_refuses_a_disk_too_small_for_the_ab_layout(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "small.img"
    make_disk(disk, 2 * GIB, tree, "gpt")
    before = sha(disk)
    d = read_disk(str(disk))
    with pytest.raises(Refused, match=r"2048 MiB is too small for the osbuilder A/B layout "
                                      r"\(2434 MiB: boot 256, two slots of 1024"):
        prepare(d, read_state(tree), dumpe2fs(disk, d.state.start), PLAN, 300 * MIB, False)
    assert sha(disk) == before


def test_refuses_when_k3os_leaves_no_room(tree: Path, tmp_path: Path) -> None:
    """k3OS's blocks spread over the disk (here: one block marked in use in every 200 MiB of
    K3OS_STATE's bitmap, as files written over years would be): no free run holds the boot
    partition, so the plan is refused and nothing is written. (Made without metadata_csum:
    debugfs's setb does not initialise a group's bitmap that mke2fs left uninitialised.)"""
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "gpt", mkfs=("-O", "^metadata_csum,^uninit_bg"))
    fs = f"{disk}?offset={48 * MIB}"
    cmds = "\n".join(f"setb {b}" for b in range(25600, 1_000_000, 51200))
    subprocess.run(["debugfs", "-w", "-f", "-", fs], input=cmds.encode(), check=True,
                   capture_output=True)
    before = sha(disk)
    d = read_disk(str(disk))
    with pytest.raises(Refused) as exc:
        prepare(d, read_state(tree), dumpe2fs(disk, d.state.start), PLAN, 300 * MIB, False)
    assert "no room for the osbuilder partitions without touching k3OS's data: needs 256 " \
           "MiB of free space in one piece for the boot partition" in str(exc.value)
    assert "--skip-images leaves container images behind" in str(exc.value)
    assert sha(disk) == before
