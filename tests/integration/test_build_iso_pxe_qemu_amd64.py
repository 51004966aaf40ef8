"""--format iso and pxe of a real qemu-amd64 build (with an install config): what is in
the hybrid ISO (xorriso's own report, GPT, El Torito, the ESP and ISO 9660 trees), the
PXE files, the live initramfs, and the install plan inside the root."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from osbuilder.host.download import sha256_file
from tests.conftest import INSTALL_CONFIG, Build, osbuilder_build
from tests.helpers.image import (
    Part,
    fat_files,
    fat_read,
    initramfs_files,
    partitions,
    probe,
    read_range,
)
from tests.helpers.k3s_fixture import Served

pytestmark = pytest.mark.integration

NAME = "osbuilder-qemu-amd64-1.0.0"


def xorriso(iso: Path, *cmds: str) -> str:
    r = subprocess.run(["xorriso", "-indev", str(iso), *cmds], capture_output=True,
                       text=True, check=True)
    return r.stdout + r.stderr


def test_iso_is_hybrid_uefi_with_live_root(live_build: Build, tmp_path: Path) -> None:
    iso = live_build.out / f"{NAME}.iso"
    size_mib = iso.stat().st_size / 2**20
    print(f"\nISO {size_mib:.0f} MiB")
    # ISO 9660 from byte 0 (CD, and the whole USB stick), labelled for the initramfs
    whole = probe(iso, Part("", "", 0, iso.stat().st_size))
    assert whole["TYPE"] == "iso9660" and whole["LABEL"] == "OSB_LIVE"
    # GPT for USB sticks: ISO 9660 again in partition 1, the ESP appended as partition 2
    label, parts = partitions(iso)
    assert label == "gpt"
    assert parts[0].type == "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"  # basic data
    assert parts[1].type == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    assert probe(iso, parts[0])["TYPE"] == "iso9660"
    esp = probe(iso, parts[1])
    assert esp["TYPE"] == "vfat" and esp["LABEL"] == "OSB_ISOEFI"
    report = xorriso(iso, "-report_el_torito", "plain")
    assert "El Torito boot img :   1  UEFI" in report, report
    files = fat_files(iso, parts[1])
    for f in ("EFI/BOOT/BOOTX64.EFI", "loader/loader.conf", "loader/entries/osb-live.conf",
              "loader/entries/osb-install.conf", "osb/live/vmlinuz", "osb/live/initrd.img"):
        assert f in files, files
    live = fat_read(iso, parts[1], "loader/entries/osb-live.conf").decode()
    assert "options boot=osblive osb.live=OSB_LIVE osb.slot=live osb.mode=live ro" in live
    assert "osb.mode=install" in fat_read(iso, parts[1],
                                          "loader/entries/osb-install.conf").decode()
    assert b"default osb-live.conf" in fat_read(iso, parts[1], "loader/loader.conf")
    tree = xorriso(iso, "-find", "/", "-type", "f")
    assert "'/osb/root.squashfs'" in tree and "'/osb/config.yaml'" in tree
    out = tmp_path / "x"
    out.mkdir()
    xorriso(iso, "-osirrox", "on", "-extract", "/osb/config.yaml", str(out / "config.yaml"),
            "-extract", "/osb/root.squashfs", str(out / "root.squashfs"))
    assert yaml.safe_load((out / "config.yaml").read_text()) == INSTALL_CONFIG
    # the live root is slot A of the disk image, byte for byte
    sq = (out / "root.squashfs").read_bytes()
    slot_a = read_range(live_build.image, partitions(live_build.image)[1][1])
    assert slot_a[:len(sq)] == sq
    # the installer's plan travels in that root
    plan = json.loads(subprocess.run(
        ["unsquashfs", "-cat", str(out / "root.squashfs"), "usr/share/osbuilder/install.json"],
        check=True, capture_output=True).stdout)
    assert (plan["board"], plan["efi_arch"], plan["root_mib"]) == ("qemu-amd64", "x64", 1024)
    assert plan["kernel_options"].startswith("root=PARTLABEL=OSB_ROOT_A rootfstype=squashfs")


def test_live_initramfs_has_the_live_boot(live_build: Build, tmp_path: Path) -> None:
    initrd = live_build.out / f"{NAME}-pxe.initrd.img"
    names = set(initramfs_files(initrd.read_bytes()))
    for f in ("scripts/osblive", "scripts/local-bottom/osbuilder", "usr/lib/osbuilder/busybox"):
        assert f in names, sorted(n for n in names if "osb" in n)
    modules = {Path(n).name for n in names if n.endswith((".ko", ".ko.xz", ".ko.zst"))}
    for mod in ("loop", "isofs", "sr_mod", "virtio_net"):
        assert any(m.split(".")[0] == mod for m in modules), f"{mod} not in the initramfs"


def test_pxe_files(live_build: Build) -> None:
    out = live_build.out
    kinds = {p.name.removeprefix(f"{NAME}-pxe.") for p in out.glob(f"{NAME}-pxe.*")}
    assert kinds == {"vmlinuz", "initrd.img", "squashfs", "ipxe", "pxelinux.cfg", "grub.cfg",
                     "config.yaml"}
    script = (out / f"{NAME}-pxe.ipxe").read_text()
    assert script.startswith("#!ipxe\n")
    assert "isset ${osb_url} || set osb_url http://${next-server}:8080\n" in script
    # the node refuses http config_urls unless the command line allows them (issue 15)
    assert (f"isset ${{osb_args}} || set osb_args osb.config_url=${{osb_url}}/{NAME}-pxe."
            "config.yaml osb.config_url_allow_http=1\n") in script
    assert (f"kernel ${{osb_url}}/{NAME}-pxe.vmlinuz initrd={NAME}-pxe.initrd.img "
            f"boot=osblive osb.live=${{osb_url}}/{NAME}-pxe.squashfs osb.slot=live") in script
    assert f"initrd ${{osb_url}}/{NAME}-pxe.initrd.img\nboot\n" in script
    assert f"APPEND boot=osblive osb.live=http://SERVER:8080/{NAME}-pxe.squashfs" in (
        out / f"{NAME}-pxe.pxelinux.cfg").read_text()
    assert f"linux (http,SERVER:8080)/{NAME}-pxe.vmlinuz boot=osblive" in (
        out / f"{NAME}-pxe.grub.cfg").read_text()
    sq = sha256_file(out / f"{NAME}-pxe.squashfs")
    assert f"sha256 {sq}" in live_build.log
    esp = partitions(live_build.image)[1][0]
    assert (out / f"{NAME}-pxe.vmlinuz").read_bytes() == fat_read(live_build.image, esp,
                                                                   "osb/a/vmlinuz")


def test_same_inputs_same_iso_and_pxe(live_build: Build, build_cache: Path,
                                      k3s_server: Served, tmp_path: Path) -> None:
    """A second build with the same inputs and SOURCE_DATE_EPOCH: the same bytes."""
    again = osbuilder_build(tmp_path / "out", build_cache, k3s_server, "--format",
                            "img,iso,pxe", "--config", str(live_build.out.parent /
                                                           "install-config.yaml"))
    names = [f"{NAME}.iso"] + [p.name for p in live_build.out.glob(f"{NAME}-pxe.*")]
    assert len(names) == 8
    for name in names:
        assert sha256_file(again.out / name) == sha256_file(live_build.out / name), name
