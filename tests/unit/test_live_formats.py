"""The iso and pxe formats on a stand-in root (real xorriso, mkfs.vfat, mtools; a few
files instead of a rootfs): the arm64 UEFI ISO (ec2-a1) without a 30-minute emulated
build, byte-identical ISOs from the same inputs, and the refusal of a board that does
not boot with systemd-boot."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.context import BuildContext
from osbuilder.host.formats.iso import write_iso
from osbuilder.host.formats.pxe import write_pxe
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.shared.errors import OsbError
from tests.helpers.image import fat_files, fat_read, partitions, probe

KVER = "6.12.0-test"
pytestmark = pytest.mark.skipif(shutil.which("xorriso") is None,
                                reason="xorriso missing (make deps): cannot make an ISO")


def context(tmp_path: Path, board: str, config: Path | None = None) -> BuildContext:
    work = tmp_path / "work"
    b = load_board(board)
    efi = "aa64" if b.arch == "arm64" else "x64"
    root = work / "rootfs"
    (root / "usr/lib/systemd/boot/efi").mkdir(parents=True)
    (root / f"usr/lib/systemd/boot/efi/systemd-boot{efi}.efi").write_bytes(b"MZ sd-boot")
    (root / "boot").mkdir()
    (root / f"boot/vmlinuz-{KVER}").write_bytes(b"kernel" * 1000)
    (root / f"boot/initrd.img-{KVER}").write_bytes(b"initrd" * 1000)
    (work / "root.squashfs").write_bytes(b"hsqs" + bytes(1 << 20))
    opts = BuildOptions(out_dir=tmp_path, version="2.0.0", source_date_epoch=1700000000,
                        formats=("iso", "pxe"), config=config)
    ctx = BuildContext(board=b, options=opts, work=work, progress=Progress(io.StringIO()),
                       kernel_version=KVER, squashfs=work / "root.squashfs")
    return ctx


def test_arm64_iso_boots_aa64(tmp_path: Path) -> None:
    ctx = context(tmp_path, "ec2-a1")
    write_iso(ctx)
    [art] = ctx.artifacts
    iso = art.path
    assert art.kind == "iso" and iso.name == "osbuilder-ec2-a1-2.0.0.iso"
    esp = partitions(iso)[1][1]
    assert probe(iso, esp)["LABEL"] == "OSB_ISOEFI"
    files = fat_files(iso, esp)
    assert "EFI/BOOT/BOOTAA64.EFI" in files and "EFI/BOOT/BOOTX64.EFI" not in files
    assert fat_read(iso, esp, "EFI/BOOT/BOOTAA64.EFI") == b"MZ sd-boot"
    entry = fat_read(iso, esp, "loader/entries/osb-live.conf").decode()
    assert entry.splitlines()[0] == ("title osbuilder 2.0.0 (live system (installs if "
                                     "install.device is configured))")
    assert "console=ttyAMA0,115200 quiet" in entry


def test_same_inputs_same_iso(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: n1\n")
    isos = []
    for run in ("a", "b"):
        ctx = context(tmp_path / run, "qemu-amd64", cfg)
        write_iso(ctx)
        isos.append(ctx.artifacts[0].path.read_bytes())
    assert isos[0] == isos[1]


def test_pxe_without_config_passes_no_config_url(tmp_path: Path) -> None:
    ctx = context(tmp_path, "qemu-amd64")
    write_pxe(ctx)
    kinds = sorted(a.kind for a in ctx.artifacts)
    assert kinds == ["pxe-grub.cfg", "pxe-initrd.img", "pxe-ipxe", "pxe-pxelinux.cfg",
                     "pxe-squashfs", "pxe-vmlinuz"]
    script = next(a.path for a in ctx.artifacts if a.kind == "pxe-ipxe").read_text()
    assert "set osb_args" not in script and script.rstrip().endswith("boot")


def test_board_without_systemd_boot_is_refused(tmp_path: Path) -> None:
    ctx = context(tmp_path, "qemu-amd64")
    ctx.board = dataclasses.replace(ctx.board, arch="armhf")
    with pytest.raises(OsbError, match=r"--format iso: board qemu-amd64 does not boot UEFI"):
        write_iso(ctx)
