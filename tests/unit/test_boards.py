"""Board files: every shipped board loads; each kind of mistake names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osbuilder.host.boards import BOARDS_DIR, board_names, load_board, load_board_file
from osbuilder.shared.errors import OsbError


def write_board(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((BOARDS_DIR / "qemu-amd64.yaml").read_text())
    data.update(changes)
    data["name"] = "test-board"
    path = tmp_path / "test-board.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", board_names())
def test_shipped_boards_load(name: str) -> None:
    b = load_board(name)
    assert b.name == name
    assert b.kernel.package in b.all_packages()
    assert "systemd" in b.all_packages()


def test_nuc_has_intel_firmware_and_wifi() -> None:
    pk = load_board("nuc-amd64").all_packages()
    for p in ("intel-microcode", "firmware-misc-nonfree", "firmware-realtek",
              "firmware-iwlwifi", "wpasupplicant", "linux-image-amd64"):
        assert p in pk
    assert "non-free-firmware" in load_board("nuc-amd64").components


def test_defaults_come_from_the_schema(tmp_path: Path) -> None:
    path = write_board(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["sizes"]
    path.write_text(yaml.safe_dump(data))
    b = load_board_file(path)
    assert (b.sizes.boot_mib, b.sizes.root_mib, b.sizes.data_mib) == (256, 1024, 128)
    assert b.suite == "trixie"


def test_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"at colour: unknown key \(known keys here: arch"):
        load_board_file(write_board(tmp_path, colour="red"))


def test_unknown_nested_key(tmp_path: Path) -> None:
    bad = {"package": "linux-image-amd64", "cmdlin": []}
    with pytest.raises(OsbError, match=r"at kernel.cmdlin: unknown key"):
        load_board_file(write_board(tmp_path, kernel=bad))


def test_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"at sizes.root_mib: expected integer, got str"):
        load_board_file(write_board(tmp_path, sizes={"root_mib": "big"}))


def test_initramfs_modules_are_module_names(tmp_path: Path) -> None:
    # rendered into the initramfs hook, a shell script run as root at build time
    # (overlays/common/etc/initramfs-tools/hooks/osbuilder.j2)
    with pytest.raises(OsbError, match=r"at initramfs_modules\[1\]: .*does not match"):
        load_board_file(write_board(tmp_path, initramfs_modules=["nvme", "nvme; reboot"]))


def test_wrong_enum(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r'at arch: "mips64el" is not one of "amd64"'):
        load_board_file(write_board(tmp_path, arch="mips64el"))


def test_armv6_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"at arch: 'armel' is ARMv6 .*k3s needs ARMv7 or newer"):
        load_board_file(write_board(tmp_path, arch="armel"))
    with pytest.raises(OsbError, match=r"board 'rpi-zero-w': .* ARMv6 and k3s needs ARMv7"):
        load_board("rpi-zero-w")


def test_u_boot_board_needs_its_binary(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"at \(top level\): missing required key uboot|uboot"):
        load_board_file(write_board(tmp_path, bootloader="u-boot"))


def test_rpi_arm64_board_facts() -> None:
    b = load_board("rpi-arm64")
    assert (b.arch, b.bootloader, b.partition_table) == ("arm64", "u-boot", "mbr")
    assert b.uboot_binary == "usr/lib/u-boot/rpi_arm64/u-boot.bin"
    assert {"raspi-firmware", "firmware-brcm80211", "u-boot-rpi", "libubootenv-tool",
            "linux-image-arm64"} <= set(b.all_packages())
    assert "non-free-firmware" in b.components
    assert b.raspi is not None and ("enable_uart", "1") in b.raspi.config
    assert "broadcom/bcm2837-rpi-3-b.dtb" in b.dtbs and "broadcom/bcm2711-rpi-4-b.dtb" in b.dtbs


def test_unknown_package_set(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"at package_sets: unknown package set 'basics'"):
        load_board_file(write_board(tmp_path, package_sets=["basics"]))


def test_name_must_match_file(tmp_path: Path) -> None:
    path = write_board(tmp_path)
    path.rename(tmp_path / "other.yaml")
    with pytest.raises(OsbError, match="must match the file name 'other'"):
        load_board_file(tmp_path / "other.yaml")


def test_unknown_board_lists_known_ones() -> None:
    with pytest.raises(OsbError, match=r"unknown board 'pi9'.*qemu-amd64"):
        load_board("pi9")


def test_not_yaml(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(OsbError, match="not valid YAML"):
        load_board_file(p)


def test_rpi5_kernel_comes_from_backports() -> None:
    from types import SimpleNamespace
    from typing import cast

    from osbuilder.host.context import BuildContext
    from osbuilder.host.stages.rootfs import mmdebstrap_argv

    b = load_board("rpi5")
    assert b.kernel.suite == "trixie-backports" and b.raspi is not None
    assert b.raspi.firmware == ()  # the Pi 5 boots from EEPROM
    argv = mmdebstrap_argv(cast(BuildContext, SimpleNamespace(board=b)), Path("OUT"))
    include = next(a for a in argv if a.startswith("--include="))
    assert "linux-image-arm64/trixie-backports" in include.split("=", 1)[1].split(",")
    assert argv[-3:] == ["OUT", "http://deb.debian.org/debian",
                         "deb http://deb.debian.org/debian trixie-backports main "
                         "non-free-firmware"]
    plain = mmdebstrap_argv(cast(BuildContext, SimpleNamespace(board=load_board("rpi-arm64"))),
                            Path("OUT"))
    assert plain[-2:] == ["OUT", "http://deb.debian.org/debian"]


def test_ec2_boards_carry_cloud_init_and_default_to_ami() -> None:
    for name in ("ec2-a1", "ec2-amd64"):
        b = load_board(name)
        assert "cloud-init" in b.all_packages() and b.formats == ("img", "ami")
        assert b.bootloader == "systemd-boot" and "ena" in b.initramfs_modules
    assert load_board("ec2-amd64").kernel.package == "linux-image-cloud-amd64"
    # cloud-init is on every board, but off unless the config names data sources
    assert "data-sources" in load_board("qemu-amd64").package_sets
    assert "data-sources" not in load_board("ec2-amd64").package_sets
