"""rpi-armhf (Pi 2B/3B in 32-bit ARMv7), built on this amd64 host through qemu-user and
booted unchanged on QEMU's 32-bit virt machine through Debian's U-Boot (u-boot-qemu
qemu_arm), which runs the image's boot.scr: slot A's LPAE kernel, its initrd with the
virtio modules the board file lists, the squashfs root, and the agent's `applied config`.

The build reads Debian's archive as a user's does (its trixie armhf index, inconsistent
on this machine's mirror in November 2026, matches its InRelease again since 2026-12-02).
k3s is a stand-in (TEST DOUBLE,
tests/helpers/k3s_fixture.py): the real one cannot be downloaded here. Slow: every
maintainer script runs under emulation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv
from tests.conftest import Build, osbuilder_build, require_build_capability
from tests.helpers.k3s_fixture import Served
from tests.helpers.upgrade_node import boot_via_u_boot, node_disk, virt_console

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOOT = 1500  # s: an emulated 32-bit ARM boot on a loaded 2-core host


@pytest.fixture(scope="module")
def armhf_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                k3s_server: Served) -> Build:
    require_build_capability()
    return osbuilder_build(tmp_path_factory.mktemp("armhf"), build_cache, k3s_server,
                           board="rpi-armhf", timeout=5400)


def test_boots_through_u_boot_on_qemu_virt(armhf_build: Build, tmp_path: Path) -> None:
    disk = node_disk(armhf_build.image, tmp_path, "pi2")
    virt_console(disk, tmp_path)
    log, sock = tmp_path / "console.log", tmp_path / "console.sock"
    serial, extra = interactive_serial(sock)
    argv = qemu_argv(load_board("rpi-armhf"), disk, tmp_path / "vars.fd", serial=serial,
                     extra=extra)
    with VM(argv, log, sock) as vm:
        t_applied, fields = boot_via_u_boot(vm, "pi2", BOOT)
        print(f"\nrpi-armhf via U-Boot on QEMU virt (TCG): boot to applied config "
              f"{t_applied:.0f} s, to login {vm.elapsed():.0f} s")
        vm.login("osb", "pw", 600)
        machine = vm.shell("uname -m", 300)
        console = vm.console()
    assert fields["slot"] == "a" and fields["board"] == "rpi-armhf", fields
    # U-Boot boards boot a dm-verity root: boot.scr passes its root hash (issue 17)
    assert fields["root"] == "/dev/mapper/osb-root:squashfs:ro", fields
    assert fields["verity"] == "on", fields
    assert "armv7l" in machine, machine
    assert not re.search(r"FAILED.*Failed to start", console), "a unit failed during boot"
