"""rpi-arm64, built on this amd64 host through qemu-user (v1.0.0, and the 1.1.0 / broken
1.2.0 bundles of tests/helpers/upgrade_node.py), then:
- inspected loop-free: MBR, file systems, Pi firmware, U-Boot, boot.scr, slot A's kernel,
  initrd and device trees, the k3s asset for arm64, the manifest's arch;
- booted on QEMU's Raspberry Pi 3 model (-M raspi3b) with the image's own kernel, initrd
  and bcm2837-rpi-3-b.dtb and the image as SD card, with the kernel arguments of the
  image's boot.scr (QEMU cannot run the Pi's GPU firmware, which would start U-Boot);
- booted unchanged on QEMU virt through Debian's U-Boot (u-boot-qemu qemu_arm64), which
  runs the image's boot.scr: slot A, the agent's `applied config`;
- upgraded v1 → v2 → broken v3 on that U-Boot path (the U-Boot slot chooser, the health
  gate and the fallback of boot.scr);
- power cut (SIGKILL of QEMU) at random instants of upgrades on that path, 10 times.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py): the real one cannot be
downloaded here. Slow: three builds with every maintainer script under emulation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv
from osbuilder.shared.layout import MIB, SLOT_DIR
from osbuilder.shared.verity import VERITY_FILE, parse_env_text, root_options
from tests.conftest import require_build_capability
from tests.helpers.http_files import Served, serve_files
from tests.helpers.image import fat_files, fat_read, partitions, probe, squash_read
from tests.helpers.upgrade_node import (
    Release,
    boot_via_u_boot,
    make_release,
    node_disk,
    power_cut_runs,
    upgrade_then_broken_upgrade,
    virt_console,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOOT = 1500  # s: an arm64 boot under TCG on a loaded 2-core host


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Release:
    require_build_capability()
    return make_release("rpi-arm64", tmp_path_factory.mktemp("rpi"), build_cache, BOOT)


@pytest.fixture
def www(release: Release) -> Iterator[Served]:
    with serve_files(release.dir) as served:
        yield served


def test_image_layout_and_files(release: Release, tmp_path: Path) -> None:
    img = release.image
    label, parts = partitions(img)
    assert label == "dos"
    assert [p.type for p in parts] == ["c", "83", "83", "83"]
    assert [p.size // MIB for p in parts] == [256, 1024, 1024, 128]
    boot, root_a, root_b, data = (probe(img, p) for p in parts)
    assert (boot["TYPE"], boot["LABEL"]) == ("vfat", "OSB_BOOT")
    assert root_a["TYPE"] == "squashfs" and "TYPE" not in root_b
    assert (data["TYPE"], data["LABEL"]) == ("ext4", "OSB_DATA")
    files = set(fat_files(img, parts[0]))
    for f in ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat",
              "config.txt", "u-boot.bin", "boot.scr", "osbuilder.env", "bcm2837-rpi-3-b.dtb",
              "osb/a/vmlinuz", "osb/a/initrd.img", "osb/a/broadcom/bcm2837-rpi-3-b.dtb",
              "osb/a/broadcom/bcm2711-rpi-4-b.dtb", "osb/a/broadcom/bcm2837-rpi-zero-2-w.dtb"):
        assert f in files, f
    config = fat_read(img, parts[0], "config.txt").decode()
    assert "kernel=u-boot.bin" in config and "arm_64bit=1" in config
    assert "enable_uart=1" in config
    assert b"rauc.slot=${osb_slot}" in fat_read(img, parts[0], "boot.scr")
    # the k3s asset of the board's arch (the stand-in names it; a real k3s is an ELF of
    # that machine, k3s-arm64 / k3s-armhf in the release)
    k3s = squash_read(img, parts[1], "usr/bin/k3s", tmp_path)
    assert k3s.endswith(b"# arm64\n"), k3s[-40:]
    assert fat_read(img, parts[0], "osb/a/vmlinuz")[0x38:0x3C] == b"ARM\x64"  # arm64 Image
    conf = squash_read(img, parts[1], "etc/rauc/system.conf", tmp_path).decode()
    assert "device=/dev/disk/by-partuuid/6f736231-03" in conf
    manifest = json.loads((release.dir / "osbuilder-rpi-arm64-1.0.0.manifest.json").read_text())
    assert manifest["arch"] == "arm64" and manifest["board"] == "rpi-arm64"
    names = {p["name"] for p in manifest["packages"]}
    assert {"raspi-firmware", "firmware-brcm80211", "u-boot-rpi", "linux-image-arm64"} <= names


def test_boots_on_qemu_raspi3b(release: Release, tmp_path: Path) -> None:
    disk = node_disk(release.image, tmp_path, "pi3")
    boot = partitions(disk)[1][0]
    for name, path in (("vmlinuz", "osb/a/vmlinuz"), ("initrd.img", "osb/a/initrd.img"),
                       ("pi3.dtb", "osb/a/broadcom/bcm2837-rpi-3-b.dtb")):
        (tmp_path / name).write_bytes(fat_read(disk, boot, path))
    script = fat_read(disk, boot, "boot.scr").decode(errors="replace")
    args = re.search(r'setenv bootargs "([^"]+)"', script)
    assert args, script
    # QEMU emulates the Pi's watchdog; a TCG guest on a loaded host cannot pet it every
    # 7.5 s (systemd's RuntimeWatchdogSec=15s) and is reset: leave it unarmed here
    # ${osb_rootargs} as boot.scr sets it: the slot's root through dm-verity when the
    # slot has a verity.txt (osbuilder/bootloaders/uboot/build), else the partition
    verity_txt = f"{SLOT_DIR}/a/{VERITY_FILE}"
    verity = (parse_env_text(fat_read(disk, boot, verity_txt).decode())
              if verity_txt in fat_files(disk, boot) else None)
    rootargs = " ".join(root_options(verity, "PARTUUID=6f736231-02"))
    append = (args.group(1).replace("${osb_rootargs}", rootargs)
              .replace("${osb_slot}", "a").replace("${OSB_ARGS}", "systemd.watchdog_sec=off"))
    assert "${" not in append, append
    log0, log1 = tmp_path / "pl011.log", tmp_path / "miniuart.log"
    argv = ["qemu-system-aarch64", "-M", "raspi3b", "-accel", "tcg,thread=single",
            "-kernel", str(tmp_path / "vmlinuz"), "-initrd", str(tmp_path / "initrd.img"),
            "-dtb", str(tmp_path / "pi3.dtb"), "-append", append,
            "-drive", f"if=sd,format=raw,file={disk}", "-display", "none", "-monitor", "none",
            "-serial", f"file:{log0}", "-serial", f"file:{log1}"]
    # the board's last console (gets /dev/console, the agent's lines) is the mini UART
    with VM(argv, log1) as vm:
        vm.wait_for(r"osbuilder: slot a", BOOT)
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml, role=server, "
                    r"hostname=pi3\)", BOOT)
        print(f"\nrpi-arm64 on QEMU raspi3b (TCG): boot to applied config {vm.elapsed():.0f} s")


EXPECT_GIB = (4096 - 1 - 256 - 2 * 1024) / 1024  # the data partition, grown


def test_boots_through_u_boot_and_boot_scr(release: Release, tmp_path: Path) -> None:
    disk = node_disk(release.image, tmp_path, "uboot-node")
    virt_console(disk, tmp_path)
    log = tmp_path / "console.log"
    argv = qemu_argv(load_board("rpi-arm64"), disk, tmp_path / "vars.fd", serial=f"file:{log}")
    with VM(argv, log) as vm:
        t_applied, fields = boot_via_u_boot(vm, "uboot-node", BOOT)
        # first boot: osbuilder-grow-data.service grows the data partition off the boot's
        # critical path and prints the status line again, before or after the agent's own
        grown = vm.wait_for(rf"osbuilder-agent: status (.* data_part={EXPECT_GIB:.2f}GiB .*)",
                            BOOT)
        fields.update(dict(kv.split("=", 1) for kv in grown.group(1).split()))
        print(f"\nrpi-arm64 via U-Boot on QEMU virt (TCG): boot to applied config "
              f"{t_applied:.0f} s, to login {vm.elapsed():.0f} s")
        console = vm.console()
    assert fields["slot"] == "a" and fields["board"] == "rpi-arm64"
    # U-Boot boards boot a dm-verity root: boot.scr passes its root hash (issue 17)
    assert fields["root"] == "/dev/mapper/osb-root:squashfs:ro", fields
    assert fields["verity"] == "on", fields
    # first boot grew the MBR data partition to the end of the 4 GiB card (the line waited
    # for above), and its ext4
    assert float(fields["data_fs"].removesuffix("GiB")) > 1.5, "ext4 was not grown online"
    assert not re.search(r"FAILED.*Failed to start", console), "a unit failed during boot"
    # slot A is known good: boot.scr wrote nothing back
    env = fat_read(disk, partitions(disk)[1][0], "osbuilder.env")
    assert env == fat_read(release.image, partitions(release.image)[1][0], "osbuilder.env")


def test_upgrade_then_broken_upgrade_rolls_back_on_u_boot(release: Release, www: Served,
                                                          tmp_path: Path) -> None:
    print("\n" + upgrade_then_broken_upgrade(release, www, tmp_path))


def test_power_cut_at_random_instants_never_loses_a_good_slot_on_u_boot(
        release: Release, www: Served, tmp_path: Path) -> None:
    """10 SIGKILLs of QEMU during download, slot write, the flip of osbuilder.env and the
    first boot of the new slot, on the U-Boot path: boot.scr's tries and fallback."""
    print("\n" + power_cut_runs(release, www, tmp_path))
