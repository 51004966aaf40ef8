"""Boot the qemu-amd64 image in QEMU (TCG, OVMF) and read the serial console.

The image carries a stand-in k3s (TEST DOUBLE, see tests/conftest.py); this test is about
the OS: slot A boots, the root is a read-only squashfs, data grows, a login prompt shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv, scratch_disk
from tests.conftest import Build

pytestmark = pytest.mark.e2e

DISK_GIB = 4
BOOT_TIMEOUT_S = 300


def test_boots_slot_a_read_only_and_grows_data(qemu_amd64_build: Build, tmp_path: Path) -> None:
    disk = scratch_disk(qemu_amd64_build.image, tmp_path / "disk.img", f"{DISK_GIB}G")
    argv = qemu_argv(load_board("qemu-amd64"), disk, tmp_path / "vars.fd",
                     serial=f"file:{tmp_path / 'console.log'}")
    with VM(argv, tmp_path / "console.log") as vm:
        vm.wait_for(r"osbuilder: slot a, data on /dev/vda4", BOOT_TIMEOUT_S)
        m = vm.wait_for(r"osbuilder-agent: status (.*)", BOOT_TIMEOUT_S)
        fields = dict(kv.split("=", 1) for kv in m.group(1).split())
        vm.wait_for(r"\S+ login:", BOOT_TIMEOUT_S)
        print(f"\nboot to login prompt: {vm.elapsed():.1f} s (TCG)")
        console = vm.console()
    assert fields["slot"] == "a"
    assert fields["version"] == "1.0.0" and fields["board"] == "qemu-amd64"
    assert fields["root"] == "/dev/vda2:squashfs:ro"
    assert fields["data"] == "/dev/vda4:ext4:rw"
    assert fields["disk"] == f"{DISK_GIB:.2f}GiB"
    # data partition grew into all the space after the boot and root partitions
    expect_gib = (DISK_GIB * 1024 - 1 - 256 - 2 * 1024 - 1) / 1024
    assert abs(float(fields["data_part"].removesuffix("GiB")) - expect_gib) < 0.02
    assert float(fields["data_fs"].removesuffix("GiB")) > 1.5, "ext4 was not grown online"
    assert "osbuilder 1.0.0 on qemu-amd64" in console  # /etc/issue above the login prompt
    assert not re.search(r"FAILED.*Failed to start", console), "a unit failed during boot"
