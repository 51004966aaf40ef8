"""The u-boot adapter's boot partition for rpi-arm64, staged from a stand-in rootfs that
holds the files the real packages would (raspi-firmware, u-boot-rpi, the kernel)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from osbuilder.bootloaders.uboot import build as uboot
from osbuilder.bootloaders.uboot.env_file import parse_env
from osbuilder.host.boards import load_board
from osbuilder.host.context import BuildContext
from osbuilder.shared.errors import OsbError
from osbuilder.shared.verity import Verity

KVER = "6.12.0-test-arm64"


def make_ctx(tmp_path: Path, skip: tuple[str, ...] = (), name: str = "rpi-arm64",
             verity: Verity | None = None) -> BuildContext:
    board = load_board(name)
    root = tmp_path / "rootfs"
    files = {
        f"boot/vmlinuz-{KVER}": b"kernel", f"boot/initrd.img-{KVER}": b"initrd",
        **{path: b"u-boot" for path in (board.uboot_binary, *dict(board.uboot_models).values())
           if path},
        **{f"usr/lib/raspi-firmware/{f}": f.encode()
           for f in (board.raspi.firmware if board.raspi else ())},
        **{f"usr/lib/linux-image-{KVER}/{d}": d.encode() for d in board.dtbs},
    }
    for rel, data in files.items():
        if rel.rsplit("/", 1)[-1] in skip:
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    ctx = SimpleNamespace(board=board, kernel_version=KVER, work=work, rootfs=root,
                          esp=work / "esp", verity=verity,
                          options=SimpleNamespace(version="1.2.3", source_date_epoch=1700000000))
    ctx.esp.mkdir()
    return cast(BuildContext, ctx)


def test_rpi_boot_partition(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    uboot.stage_boot_files(ctx)
    esp = ctx.esp
    for name in ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat",
                 "u-boot.bin", "boot.scr", "osbuilder.env", "config.txt",
                 "bcm2837-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb",
                 "osb/a/vmlinuz", "osb/a/initrd.img", "osb/a/broadcom/bcm2837-rpi-3-b.dtb",
                 "osb/a/broadcom/bcm2711-rpi-400.dtb"):
        assert (esp / name).is_file(), name
    config = (esp / "config.txt").read_text().splitlines()
    assert config[2:] == ["[all]", "kernel=u-boot.bin", "arm_64bit=1", "enable_uart=1",
                          "gpu_mem=16", "upstream_kernel=1"]
    env = parse_env((esp / "osbuilder.env").read_bytes())
    assert (esp / "osbuilder-redund.env").read_bytes() == (esp / "osbuilder.env").read_bytes()
    assert env["BOOT_ORDER"] == "A B" and env["BOOT_A_OK"] == "1"
    assert env["BOOT_A_VERSION"] == "1.2.3" and env["BOOT_B_LEFT"] == "0"
    # boot.scr: a U-Boot script image (mkimage) around the script with this board's cmdline
    header = subprocess.run(["dumpimage", "-l", str(esp / "boot.scr")], capture_output=True,
                            text=True, check=True).stdout
    assert "AArch64 Linux Script" in header
    assert "Created:      Tue Nov 14 22:13:20 2023" in header  # SOURCE_DATE_EPOCH
    script = (esp / "boot.scr").read_bytes()
    assert (b'setenv bootargs "${osb_rootargs} rootfstype=squashfs ro osb.slot=${osb_slot} '
            b'rauc.slot=${osb_slot} console=tty1 console=ttyAMA0,115200 '
            b'console=ttyS1,115200 quiet rootwait ${OSB_ARGS}"') in script
    assert "#OSB_ARGS=" in (esp / "osbuilder-args.txt").read_text()
    assert not (esp / "osb/a/verity.txt").exists()


def test_slot_a_carries_its_root_hash_for_boot_scr(tmp_path: Path) -> None:
    """With the root's dm-verity hash the build puts it beside slot A's kernel; boot.scr
    imports it (env import -t) and names the verified root device."""
    v = Verity("cd" * 32, 1 << 20)
    ctx = make_ctx(tmp_path, verity=v)
    uboot.stage_boot_files(ctx)
    assert (ctx.esp / "osb/a/verity.txt").read_text() == v.env_text()
    script = (ctx.esp / "boot.scr").read_bytes()
    assert b"env import -t ${kernel_addr_r} ${filesize} OSB_VERITY" in script
    assert (b'setenv osb_rootargs "root=/dev/mapper/osb-root osb.verity_data=${osb_root} '
            b'${OSB_VERITY} panic=10"') in script


def test_missing_dtb_names_the_board_field(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, skip=("bcm2711-rpi-400.dtb",))
    with pytest.raises(OsbError, match=r"at dtbs: broadcom/bcm2711-rpi-400.dtb is not in the "
                                       r"kernel package linux-image-arm64"):
        uboot.stage_boot_files(ctx)


def test_missing_firmware_names_the_package(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, skip=("start4.elf",))
    with pytest.raises(OsbError, match=r"at raspi.firmware: start4.elf not in "
                                       r"/usr/lib/raspi-firmware .*package raspi-firmware"):
        uboot.stage_boot_files(ctx)


def test_missing_u_boot_names_the_package(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, skip=("u-boot.bin",))
    with pytest.raises(OsbError, match=r"at uboot.binary: .* is not in the rootfs .*u-boot-rpi"):
        uboot.stage_boot_files(ctx)


def test_rpi_armhf_starts_a_u_boot_per_model(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, name="rpi-armhf")
    uboot.stage_boot_files(ctx)
    assert (ctx.esp / "u-boot.bin").is_file() and (ctx.esp / "u-boot-pi2.bin").is_file()
    config = (ctx.esp / "config.txt").read_text().splitlines()
    assert config[2:] == ["[all]", "kernel=u-boot.bin", "enable_uart=1", "gpu_mem=16",
                          "upstream_kernel=1", "[pi2]", "kernel=u-boot-pi2.bin", "[all]"]
    assert (ctx.esp / "osb/a/bcm2836-rpi-2-b.dtb").is_file()  # flat, as armhf U-Boot asks
    header = subprocess.run(["dumpimage", "-l", str(ctx.esp / "boot.scr")],
                            capture_output=True, text=True, check=True).stdout
    assert "ARM Linux Script" in header
    assert b"\nbootz ${osb_kernel_addr}" in (ctx.esp / "boot.scr").read_bytes()


def test_jetson_card_has_no_u_boot_and_names_its_dtb(tmp_path: Path) -> None:
    """L4T's U-Boot lives in QSPI: the card holds boot.scr, the env and the slot files;
    the script falls back to the board's dtb when U-Boot's fdtfile names none here."""
    ctx = make_ctx(tmp_path, name="jetson-nano")
    uboot.stage_boot_files(ctx)
    names = {str(p.relative_to(ctx.esp)) for p in ctx.esp.rglob("*") if p.is_file()}
    assert names == {"boot.scr", "osbuilder.env", "osbuilder-redund.env",
                     "osbuilder-args.txt", "osb/a/vmlinuz",
                     "osb/a/initrd.img",
                     "osb/a/nvidia/tegra210-p3450-0000.dtb"}
    assert b"setenv osb_default_dtb osb/${osb_slot}/nvidia/tegra210-p3450-0000.dtb" in \
        (ctx.esp / "boot.scr").read_bytes()
