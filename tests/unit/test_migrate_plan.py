"""The k3OS migration's plan, pure: what is free, where the osbuilder partitions go, and
the ordering rules (writes into k3OS's free space only, before the one table switch)
checked on hand-made cases and on many random free-space maps."""

from __future__ import annotations

import random
from typing import Any

import pytest

from osbuilder.node.install import migrate_plan as mp
from osbuilder.node.install.k3os_disk import Ext4Super, Extent, K3osDisk
from osbuilder.shared.layout import MIB

DUMPE2FS = """\
Group 0: (Blocks 0-32767) csum 0x1234 [ITABLE_ZEROED]
  Primary superblock at 0, Group descriptors at 1-1
  Free blocks: 9000-32767
  Free inodes: 20-8192
Group 1: (Blocks 32768-65535) csum 0x5678 [INODE_UNINIT, ITABLE_ZEROED]
  Backup superblock at 32768, Group descriptors at 32769-32769
  Free blocks: 32800-40000, 40002, 40010-65535
  Free inodes: 8193-16384
Group 2: (Blocks 65536-98303) [INODE_UNINIT, BLOCK_UNINIT]
  Free blocks:
"""


def disk(size_mib: int = 4096, blocks: int | None = None) -> K3osDisk:
    """A k3OS GPT disk: ESP 1-48 MiB, K3OS_STATE 48 MiB to the end (grown)."""
    state = Extent(48 * MIB, (size_mib - 48) * MIB - 34 * 512)
    fs = Ext4Super("K3OS_STATE", 4096, blocks or state.size // 4096, True, False)
    return K3osDisk("/dev/vda", size_mib * MIB, "gpt", state, 2, fs,
                    (Extent(MIB, 47 * MIB),))


def test_free_blocks_reads_every_range_of_dumpe2fs() -> None:
    assert mp.free_blocks(DUMPE2FS) == [(9000, 32767), (32800, 40000), (40002, 40002),
                                        (40010, 65535)]


def test_free_space_is_free_blocks_past_the_fs_and_outside_k3os_partitions() -> None:
    d = disk(4096, blocks=100_000)  # the file system ends inside its partition (not grown)
    spans = mp.free_spans(d, [(2048, 4095)])
    st = d.state.start
    assert (st + 2048 * 4096, st + 4096 * 4096) in spans
    # past the file system's end, to the disk's end (the old backup GPT's sectors too)
    assert spans[-1] == (st + 100_000 * 4096, d.size)
    # before the ESP: the first MiB (MBR, primary GPT) is outside every k3OS partition
    assert spans[0] == (0, MIB)
    runs = mp.free_runs(spans, d.mib)
    assert runs[0] == mp.Region(56, 8)  # blocks 2048-4095: MiB 8-16 of the fs, 48 on
    assert all(r.start >= 1 and r.end <= d.mib - 1 for r in runs)
    assert not mp.is_free(spans, 0, d.size)
    assert mp.is_free(spans, d.size - 33 * 512, d.size)


def test_a_used_block_makes_its_whole_mib_unusable() -> None:
    d = disk(4096)
    spans = mp.free_spans(d, [(0, 255), (257, 1000)])  # block 256 (MiB 1 of the fs) used
    runs = mp.free_runs(spans, d.mib)
    assert runs[0] == mp.Region(48, 1)  # MiB 48 whole; MiB 49 holds block 256
    assert runs[1].start == 50


def place(runs: list[mp.Region], size: int = 4096, image: int = 300,
          data_fs: int = 128) -> mp.Placement:
    return mp.place(size, 48, runs, 256, 1024, 128, image, data_fs)


def test_slot_b_covers_used_space_and_the_others_go_to_free_runs() -> None:
    # k3OS uses MiB 48-700 (its system files) and a backup superblock at MiB 1200
    runs = [mp.Region(700, 500), mp.Region(1201, 2894)]
    p = place(runs)
    assert p.root_b == mp.Region(48, 1024)  # over k3OS's used files: written by no one
    w = p.writes()
    for r in w.values():
        assert any(f.start <= r.start and r.end <= f.end for f in runs), r
    assert p.data.end == 4095 and p.data.start == w["data"].start
    assert mp.check(p, mp.steps(p), runs, 4096) == []


def test_the_order_that_leaves_data_largest_wins() -> None:
    runs = [mp.Region(48, 256), mp.Region(1400, 2695)]  # the boot partition fits early
    p = place(runs)
    assert p.boot == mp.Region(48, 256)
    assert p.root_b == mp.Region(304, 1024)  # over used space, right after it
    assert p.root_a == mp.Region(1400, 1024)  # its image needs free space: the next run
    assert p.data == mp.Region(2424, 4095 - 2424)
    # slot B first would have pushed the boot partition to MiB 1400 and data to 2680


def test_no_room_is_refused_with_the_missing_piece() -> None:
    runs = [mp.Region(1100, 200), mp.Region(1400, 200), mp.Region(1700, 2395)]
    with pytest.raises(mp.DoesNotFit) as exc:
        place([mp.Region(1100, 200), mp.Region(1400, 200)])
    assert str(exc.value).endswith(
        "needs 256 MiB of free space in one piece for the boot partition and 300 MiB of free "
        "space in one piece for the image of slot A (the largest free run is 200 MiB)")
    p = place(runs)  # boot and data in the big run, A's image after B
    assert p.data.end == 4095
    with pytest.raises(mp.DoesNotFit, match="3000 MiB of free space in one piece for the "
                                            "data file system"):
        place(runs, data_fs=3000)
    with pytest.raises(mp.DoesNotFit, match="larger than a slot"):
        place(runs, image=1500)


def test_the_checks_catch_broken_plans() -> None:
    runs = [mp.Region(700, 500), mp.Region(1201, 2894)]
    p = place(runs)
    good = mp.steps(p)
    assert [s.kind for s in good] == ["data", "root-a", "boot", "check-k3os", "commit",
                                      "wipe-b", "boot-entry"]
    late = [good[4], *good[:4], *good[5:]]  # the table first
    assert "data writes into k3OS's space after the table changed" in mp.check(
        p, late, runs, 4096)
    used = [mp.Region(700, 500)]  # as if k3OS used everything above MiB 1200
    assert any("which k3OS uses" in b for b in mp.check(p, good, used, 4096))
    twice = [*good[:5], good[4], *good[5:]]
    assert "the table must change exactly once" in mp.check(p, twice, runs, 4096)
    moved = mp.Placement(p.boot, p.root_a, p.root_b, mp.Region(100, 3995), p.image_mib,
                         p.data_fs_mib)
    assert any("overlap" in b for b in mp.check(moved, mp.steps(moved), runs, 4096))


def random_case(seed: int) -> tuple[int, list[mp.Region], Any]:
    """A random k3OS free-space map (runs of free MiB between used ones) and a placement
    for it, or the refusal."""
    rnd = random.Random(seed)
    size = rnd.choice([2500, 3000, 4096, 8192, 16384])
    runs, at = [], 48 + rnd.randrange(0, 800)
    while at < size - 1:
        length = rnd.choice([1, 3, 40, 128, 300, 900, 2000, 6000])
        runs.append(mp.Region(at, min(length, size - 1 - at)))
        at += length + rnd.choice([1, 2, 17, 129, 700])
    try:
        return size, runs, mp.place(size, 48, runs, 256, 1024, 128,
                                    rnd.choice([90, 300, 700]), rnd.choice([128, 400, 1500]))
    except mp.DoesNotFit as exc:
        return size, runs, exc


@pytest.mark.parametrize("seed", range(400))
def test_random_free_space_plans_keep_every_rule(seed: int) -> None:
    """Either refused, or its writes lie in free space, its partitions are disjoint and
    inside the disk, the data partition is last, the table changes once, after the writes."""
    size, runs, p = random_case(seed)
    if isinstance(p, mp.DoesNotFit):
        assert "free space in one piece" in str(p)
        return
    assert mp.check(p, mp.steps(p), runs, size) == []
    for what, r in p.writes().items():
        assert any(f.start <= r.start and r.end <= f.end for f in runs), (what, r)


def test_most_random_maps_get_a_plan() -> None:
    """The property above means something only if most of its maps got a plan."""
    placed = sum(isinstance(random_case(seed)[2], mp.Placement) for seed in range(400))
    assert 200 < placed < 400, placed


def test_table_order_keeps_a_valid_table_at_each_write() -> None:
    gpt = [w[0] for w in mp.gpt_order("gpt", 4096 * MIB, 2, 32)]
    assert gpt == ["backup entries", "backup header", "primary entries", "primary header",
                   "protective MBR"]
    dos = mp.gpt_order("dos", 4096 * MIB, 2, 32)
    # k3OS's BIOS boot keeps GRUB's core.img in sectors 1-33 until sector 0 changes
    assert [w[0] for w in dos][:3] == ["backup entries", "backup header", "protective MBR"]
    spans = {name: (off, n) for name, off, n in dos}
    assert spans["protective MBR"] == (0, 512)
    assert spans["backup header"] == (4096 * MIB - 512, 512)
    assert spans["backup entries"] == (4096 * MIB - 33 * 512, 32 * 512)
    assert spans["primary entries"] == (1024, 32 * 512)
