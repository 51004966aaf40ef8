"""Partition-table arithmetic of the A/B layout."""

from __future__ import annotations

import pytest

from osbuilder.boards import load_board
from osbuilder.layout import (
    ESP_TYPE,
    LINUX_DATA_TYPE,
    MIB,
    SECTOR,
    ab_layout,
    plan_layout,
)


def test_ab_layout_order_sizes_and_alignment() -> None:
    board = load_board("qemu-amd64")
    lay = ab_layout(board, "seed")
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
    a, b, c = ab_layout(board, "s1"), ab_layout(board, "s1"), ab_layout(board, "s2")
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
