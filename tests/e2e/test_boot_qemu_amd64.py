"""Boot the qemu-amd64 image in QEMU (TCG, OVMF) and read the serial console.

The image carries a stand-in k3s (TEST DOUBLE, see tests/conftest.py); this test is about
the OS: slot A boots, the root is a read-only squashfs, data grows, a login prompt shows;
and its boot keeps pace with stock Debian's (issue 18's regression guard): a stock trixie
image (tests/helpers/stock_debian.py) is booted first, in the same test, by the same QEMU
command line, and osbuilder's boot to `applied config` may take at most RATIO_MAX times
stock Debian's boot to its login prompt. A ratio, never an absolute time: TCG on a shared
2-core machine varies with its load.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv, scratch_disk
from tests.conftest import Build, require_build_capability
from tests.helpers.stock_debian import build_stock_image

pytestmark = pytest.mark.e2e

DISK_GIB = 4
BOOT_TIMEOUT_S = 300
# Issue 18's bar. Measured on a quiet machine on 2026-12-04: 1.42 before the first boot
# took the build's verdict (bench/results/20261204T165240Z-boot.json, ratio_applied_first),
# 1.20 after (20261204T172133Z). Beside the other test worker the load changes between two
# boots minutes apart, so a ratio over the bar is measured once more, both boots back to
# back, and the better of the two counts.
RATIO_MAX = 1.5
# the data partition grows into all the space after the boot and root partitions
EXPECT_DATA_GIB = (DISK_GIB * 1024 - 1 - 256 - 2 * 1024 - 1) / 1024


@pytest.fixture(scope="module")
def stock_image(build_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_build_capability()
    out = tmp_path_factory.mktemp("stock") / "stock-debian.img"
    return build_stock_image(load_board("qemu-amd64"), build_cache / "stock", out)


def boot(image: Path, work: Path, network: bool = True) -> VM:
    work.mkdir()
    disk = scratch_disk(image, work / "disk.img", f"{DISK_GIB}G")
    argv = qemu_argv(load_board("qemu-amd64"), disk, work / "vars.fd",
                     serial=f"file:{work / 'console.log'}", network=network)
    return VM(argv, work / "console.log")


def stock_login_s(stock_image: Path, work: Path) -> float:
    with boot(stock_image, work) as vm:
        vm.wait_for(r"^stock login:", BOOT_TIMEOUT_S)
        return vm.elapsed()


def applied_config_s(image: Path, work: Path) -> float:
    with boot(image, work) as vm:
        vm.wait_for(r"osbuilder-agent: applied config", BOOT_TIMEOUT_S)
        return vm.elapsed()


def test_boots_slot_a_read_only_grows_data_and_keeps_pace_with_debian(
        qemu_amd64_build: Build, stock_image: Path, tmp_path: Path) -> None:
    stock_login = stock_login_s(stock_image, tmp_path / "stock")
    with boot(qemu_amd64_build.image, tmp_path / "osbuilder") as vm:
        vm.wait_for(r"osbuilder: slot a, data on /dev/vda4", BOOT_TIMEOUT_S)
        vm.wait_for(r"osbuilder-agent: applied config", BOOT_TIMEOUT_S)
        applied = vm.elapsed()
        vm.wait_for(r"\S+ login:", BOOT_TIMEOUT_S)
        login = vm.elapsed()
        # first boot: osbuilder-grow-data.service grows the data partition off the boot's
        # critical path (idle priority, before k3s) and prints the status line again, before
        # or after the agent's own: wait for the one that shows the grown partition
        m = vm.wait_for(rf"osbuilder-agent: status (.* data_part={EXPECT_DATA_GIB:.2f}GiB .*)",
                        BOOT_TIMEOUT_S)
        fields = dict(kv.split("=", 1) for kv in m.group(1).split())
        console = vm.console()
    print(f"\nstock Debian to login {stock_login:.1f} s; osbuilder to applied config "
          f"{applied:.1f} s ({applied / stock_login:.2f}x), to login {login:.1f} s "
          f"({login / stock_login:.2f}x) (TCG)")
    assert fields["slot"] == "a"
    assert fields["version"] == "1.0.0" and fields["board"] == "qemu-amd64"
    assert fields["root"] == "/dev/vda2:squashfs:ro"
    assert fields["data"] == "/dev/vda4:ext4:rw"
    assert fields["disk"] == f"{DISK_GIB:.2f}GiB"
    # data partition grew into all the space after the boot and root partitions (the line
    # waited for above)
    assert float(fields["data_fs"].removesuffix("GiB")) > 1.5, "ext4 was not grown online"
    assert "osbuilder 1.0.0 on qemu-amd64" in console  # /etc/issue above the login prompt
    assert not re.search(r"FAILED.*Failed to start", console), "a unit failed during boot"
    if applied / stock_login > RATIO_MAX:
        again = (stock_login_s(stock_image, tmp_path / "stock-again"),
                 applied_config_s(qemu_amd64_build.image, tmp_path / "osbuilder-again"))
        print(f"measured again: stock Debian to login {again[0]:.1f} s; osbuilder to "
              f"applied config {again[1]:.1f} s ({again[1] / again[0]:.2f}x)")
        if again[1] / again[0] < applied / stock_login:
            stock_login, applied = again
    assert applied / stock_login <= RATIO_MAX, (
        f"boot to applied config {applied:.1f} s is more than {RATIO_MAX}x stock Debian's "
        f"boot to login {stock_login:.1f} s (the better of two measurements)")


def test_login_prompt_does_not_wait_for_the_network(qemu_amd64_build: Build,
                                                     tmp_path: Path) -> None:
    """A board without its cable (here: no network card at all) shows its login prompt as
    soon as the node is configured. systemd-networkd-wait-online waits 2 minutes for a link
    that never comes (its default --timeout=120, systemd-networkd-wait-online.service(8)),
    fails, and network-online.target is reached anyway (it only Wants= that unit): k3s and
    `online` wait for the target, nothing before the gettys may. Measured with the image
    before this was fixed: the prompt came 164 s after power-on, just after the console's
    "[FAILED] Failed to start systemd-networkd-w... Wait for Network to be Configured."."""
    with boot(qemu_amd64_build.image, tmp_path / "offline", network=False) as vm:
        vm.wait_for(r"osbuilder-agent: applied config", BOOT_TIMEOUT_S)
        vm.wait_for(r"\S+ login:", BOOT_TIMEOUT_S)
        login = vm.elapsed()
        before_login = vm.console()
    print(f"\nno network: login prompt {login:.1f} s after power-on (TCG)")
    assert not re.search(r"Failed to start .*Wait for Network to be Configured", before_login), (
        "the login prompt waited for systemd-networkd-wait-online's timeout")
