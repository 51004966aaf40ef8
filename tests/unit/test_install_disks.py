"""Which disks `osbuilder-agent install` refuses: the rules on gathered facts, and
blkid's findings on real file system images (files: no loop devices here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from osbuilder.node.install.disks import (
    Target,
    _disks_from_lsblk,
    gather,
    partition_path,
    problems,
    signatures,
)
from osbuilder.shared.errors import OsbError

GIB = 1 << 30
EMPTY = Target("/dev/vda", "/dev/vda", True, True, 8 * GIB, (), ())


def test_empty_whole_disk_is_accepted() -> None:
    assert problems(EMPTY, 3 * GIB, force=False, no_format=False) == []


def test_data_refused_unless_force() -> None:
    t = Target("/dev/vda", "/dev/vda", True, True, 8 * GIB, (),
               ("/dev/vda: gpt partition table", "/dev/vda1: ext4 'home'"))
    [msg] = problems(t, 3 * GIB, force=False, no_format=False)
    assert msg.startswith("install.device /dev/vda: holds data (/dev/vda: gpt partition "
                          "table; /dev/vda1: ext4 'home'); refusing to erase it")
    assert "install.force: true" in msg
    assert problems(t, 3 * GIB, force=True, no_format=False) == []
    assert problems(t, 3 * GIB, force=False, no_format=True) == []


def test_mounted_refused_even_with_force() -> None:
    t = Target("/dev/disk/by-id/usb-stick", "/dev/sda", True, True, 8 * GIB,
               ("/dev/sda1 on /run/osbuilder/medium",), ())
    [msg] = problems(t, 3 * GIB, force=True, no_format=False)
    assert msg == ("install.device /dev/disk/by-id/usb-stick (/dev/sda): in use, mounted: "
                   "/dev/sda1 on /run/osbuilder/medium (never overwritten, also not with "
                   "install.force)")


def test_small_partition_and_file_refused() -> None:
    small = Target("/dev/vda1", "/dev/vda1", True, False, 1 * GIB, (), ())
    msgs = problems(small, 3 * GIB, force=True, no_format=False)
    assert any("not a whole disk" in m for m in msgs)
    assert any("1024 MiB is too small, the A/B layout needs 3072 MiB" in m for m in msgs)
    f = Target("/tmp/x.img", "/tmp/x.img", False, False, 8 * GIB, (), ())
    assert problems(f, 3 * GIB, True, False) == ["install.device /tmp/x.img: not a block device"]


def test_missing_device_is_named() -> None:
    with pytest.raises(OsbError, match=r"install\.device /dev/osb-no-such-disk: No such file"):
        gather("/dev/osb-no-such-disk")


def test_blkid_finds_file_systems_and_tables(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * (4 << 20))
    assert signatures([str(blank)]) == []
    ext4 = tmp_path / "ext4.img"
    subprocess.run(["mkfs.ext4", "-q", "-L", "precious", str(ext4), "8M"], check=True)
    assert signatures([str(ext4)]) == [f"{ext4}: ext4 'precious'"]
    gpt = tmp_path / "gpt.img"
    gpt.write_bytes(b"\0" * (4 << 20))
    subprocess.run(["sfdisk", "--quiet", str(gpt)], input=b"label: gpt\n,1M\n", check=True)
    assert signatures([str(gpt)]) == [f"{gpt}: gpt partition table"]
    # a regular file is never a target, whatever it holds
    t = gather(str(ext4))
    assert not t.is_block and t.signatures == (f"{ext4}: ext4 'precious'",)
    assert problems(t, 0, True, False) == [f"install.device {ext4}: not a block device"]


def test_lsblk_tree_to_disks() -> None:
    data = {"blockdevices": [
        {"name": "loop0", "path": "/dev/loop0", "size": 300, "type": "loop",
         "mountpoints": ["/run/rootfsbase"]},
        {"name": "sr0", "path": "/dev/sr0", "size": 900, "type": "rom", "model": "QEMU CD",
         "mountpoints": ["/run/osbuilder/medium"]},
        {"name": "vda", "path": "/dev/vda", "size": 4 * GIB, "type": "disk", "model": None,
         "mountpoints": [None], "children": [
             {"name": "vda1", "path": "/dev/vda1", "size": GIB, "type": "part",
              "mountpoints": ["/mnt", "/srv"]}]},
    ]}
    [d] = _disks_from_lsblk(data)
    assert (d.path, d.size_bytes, d.model) == ("/dev/vda", 4 * GIB, "")
    assert d.mounted == ("/dev/vda1 on /mnt", "/dev/vda1 on /srv")
    assert d.partitions == ("/dev/vda1",)


def test_partition_names() -> None:
    assert partition_path("/dev/sda", 1) == "/dev/sda1"
    assert partition_path("/dev/vda", 4) == "/dev/vda4"
    assert partition_path("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    assert partition_path("/dev/mmcblk0", 3) == "/dev/mmcblk0p3"
