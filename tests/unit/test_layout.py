"""Partition-table arithmetic of the A/B layout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.node.grow_mbr import grown_mbr
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import (
    ESP_TYPE,
    LINUX_DATA_TYPE,
    MBR_DISK_ID,
    MIB,
    SECTOR,
    plan_layout,
    root_device,
    root_device_path,
)


def test_ab_layout_order_sizes_and_alignment() -> None:
    board = load_board("qemu-amd64")
    lay = board.disk_layout("seed")
    assert [p.label for p in lay.partitions] == ["OSB_BOOT", "OSB_ROOT_A", "OSB_ROOT_B",
                                                 "OSB_DATA"]
    assert [p.size_mib for p in lay.partitions] == [256, 1024, 1024, 128]
    assert lay.partitions[0].start_mib == 1
    for prev, nxt in zip(lay.partitions, lay.partitions[1:], strict=False):
        assert nxt.start_mib == prev.end_mib, "partitions are back to back"
    assert all(p.start_bytes % MIB == 0 for p in lay.partitions)
    assert lay.total_mib == 1 + 256 + 2 * 1024 + 128 + 1
    assert lay.by_label("OSB_BOOT").type_uuid == ESP_TYPE
    assert lay.by_label("OSB_DATA").type_uuid == LINUX_DATA_TYPE
    assert lay.by_label("OSB_ROOT_A").type_uuid == "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
    assert lay.index_of("OSB_DATA") == 4


def test_uuids_are_stable_per_seed_and_distinct() -> None:
    board = load_board("qemu-amd64")
    a, b, c = board.disk_layout("s1"), board.disk_layout("s1"), board.disk_layout("s2")
    assert a == b
    assert a.disk_uuid != c.disk_uuid
    uuids = [p.part_uuid for p in a.partitions] + [a.disk_uuid]
    assert len(set(uuids)) == len(uuids)


def test_sfdisk_script_sectors() -> None:
    lay = plan_layout([("X", ESP_TYPE, 3), ("Y", LINUX_DATA_TYPE, 5)], "s")
    script = lay.sfdisk_script()
    assert "label: gpt" in script
    assert f"sector-size: {SECTOR}" in script
    assert f'start=2048, size={3 * MIB // SECTOR}, type={ESP_TYPE.upper()}' in script
    assert f'start={4 * MIB // SECTOR}, size={5 * MIB // SECTOR}' in script
    assert 'name="Y"' in script
    assert lay.total_bytes == (1 + 3 + 5 + 1) * MIB


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="partition X: size must be positive"):
        plan_layout([("X", ESP_TYPE, 0)], "s")
    with pytest.raises(ValueError, match="at least one partition"):
        plan_layout([], "s")


def test_mbr_layout_as_sfdisk_writes_it(tmp_path: Path) -> None:
    """The Pi layout: four primaries (boot FAT marked bootable, two roots, data last), the
    fixed disk id, so each slot's root is PARTUUID=6f736231-0N on every osbuilder card."""
    lay = load_board("rpi-arm64").disk_layout("seed")
    assert lay.table == "mbr" and lay.disk_uuid == MBR_DISK_ID
    disk = tmp_path / "sd.img"
    with disk.open("wb") as f:
        f.truncate(lay.total_bytes)
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
                   input=lay.sfdisk_script(), text=True, check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and table["id"] == "0x6f736231"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    assert parts[0].get("bootable") is True and not parts[1].get("bootable")
    assert [p["start"] * SECTOR // MIB for p in parts] == [p.start_mib for p in lay.partitions]
    assert root_device("mbr", "b") == "PARTUUID=6f736231-03"
    assert root_device_path("mbr", "a") == "/dev/disk/by-partuuid/6f736231-02"
    assert root_device_path("gpt", "b") == "/dev/disk/by-partlabel/OSB_ROOT_B"


def test_first_boot_grows_the_mbr_data_partition(tmp_path: Path) -> None:
    """What `osbuilder-agent grow-data` writes on a Pi's first boot, read back by sfdisk."""
    lay = load_board("rpi-arm64").disk_layout("seed")
    disk = tmp_path / "sd.img"
    with disk.open("wb") as f:
        f.truncate(lay.total_bytes)
    subprocess.run(["sfdisk", "--quiet", str(disk)], input=lay.sfdisk_script(), text=True,
                   check=True)
    with disk.open("r+b") as f:
        f.truncate(8 << 30)  # the image on an 8 GiB card
        mbr = f.read(SECTOR)
    grown = grown_mbr(mbr, 4, (8 << 30) // SECTOR)
    assert grown is not None and grown[:446] == mbr[:446] and grown[510:] == mbr[510:]
    with disk.open("r+b") as f:
        f.write(grown)
    parts = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    data = parts["partitions"][3]
    assert (data["start"] + data["size"]) * SECTOR == 8 << 30
    assert [p["size"] for p in parts["partitions"][:3]] == \
        [p.size_mib * MIB // SECTOR for p in lay.partitions[:3]]
    assert grown_mbr(grown, 4, (8 << 30) // SECTOR) is None  # second boot: nothing to do
    with pytest.raises(OsbError, match="no 55 AA signature"):
        grown_mbr(bytes(SECTOR), 4, 1 << 24)
