"""The files of an osbuilder ESP, copied from an image root: the build fills the disk
image's boot partition with them, `osbuilder-agent install` the target disk's (with /
as the root: the live system runs the same image). Plain file copies, no host tools."""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.bootloaders.systemd_boot.entries import (
    LOADER_CONF,
    UKI_FILE,
    loader_conf,
    render_entry,
)
from osbuilder.shared.layout import SLOT_DIR


def systemd_boot_efi(root: Path, efi_arch: str) -> Path:
    return root / f"usr/lib/systemd/boot/efi/systemd-boot{efi_arch}.efi"


def populate_esp(esp: Path, root: Path, efi_arch: str, kernel_version: str, os_version: str,
                 options: str, slot: str = "a") -> None:
    """systemd-boot as the removable-media loader, loader.conf, the slot's entry, kernel
    and initrd."""
    (esp / "EFI/BOOT").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(systemd_boot_efi(root, efi_arch), esp / f"EFI/BOOT/BOOT{efi_arch.upper()}.EFI")
    (esp / "loader/entries").mkdir(parents=True, exist_ok=True)
    (esp / "loader/loader.conf").write_text(LOADER_CONF)
    (esp / f"loader/entries/osb-{slot}.conf").write_text(
        render_entry(slot, os_version, 1, options))
    kdir = esp / SLOT_DIR / slot
    kdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / f"boot/vmlinuz-{kernel_version}", kdir / "vmlinuz")
    shutil.copyfile(root / f"boot/initrd.img-{kernel_version}", kdir / "initrd.img")


ENROLL_DIR = "loader/keys/auto"  # the folder systemd-boot enrolls by itself


def populate_signed_esp(esp: Path, loader: Path, efi_arch: str, auth_files: tuple[Path, ...],
                        enroll: str, uki: Path, os_version: str, slot: str = "a") -> None:
    """The Secure Boot ESP: signed systemd-boot, loader.conf with secure-boot-enroll, the
    fleet's PK/KEK/db .auth files to enroll, the slot's entry starting its signed UKI."""
    (esp / "EFI/BOOT").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(loader, esp / f"EFI/BOOT/BOOT{efi_arch.upper()}.EFI")
    (esp / "loader/entries").mkdir(parents=True, exist_ok=True)
    (esp / "loader/loader.conf").write_text(loader_conf(enroll))
    (esp / ENROLL_DIR).mkdir(parents=True, exist_ok=True)
    for f in auth_files:
        shutil.copyfile(f, esp / ENROLL_DIR / f.name)
    (esp / f"loader/entries/osb-{slot}.conf").write_text(render_entry(slot, os_version, 1, None))
    (esp / SLOT_DIR / slot).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(uki, esp / SLOT_DIR / slot / UKI_FILE)
