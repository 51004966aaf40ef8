"""Architecture facts: one table, by Debian architecture name. Everything that differs by
CPU architecture (and nothing else) is here; code asks `arch_facts(name)`."""

from __future__ import annotations

from dataclasses import dataclass

from osbuilder.shared.errors import OsbError


@dataclass(frozen=True)
class Arch:
    debian: str  # dpkg's name: amd64, arm64, armhf
    elf_machine: int  # e_machine of its binaries (the rootfs check reads /bin/sh)
    gpt_root_type: str  # Discoverable Partitions Specification: root partition type UUID
    k3s_asset: str  # k3s release file of the binary
    k3s_suffix: str  # k3s release files' arch suffix: sha256sum-<s>.txt, airgap images
    qemu_system: str  # QEMU system emulator
    qemu_user: str  # qemu-user (binfmt_misc) name, for foreign-arch chroots
    uefi: str | None  # UEFI's file-name suffix (BOOT<X>.EFI, systemd-boot<x>.efi); None: no UEFI
    ec2: str | None  # EC2's architecture name; None: EC2 has no such instances
    uboot_mkimage: str | None  # U-Boot's architecture (mkimage -A); None: no U-Boot boards
    kernel_boot: str | None  # U-Boot's command for the kernel's image format (booti, bootz)


ARCHES: dict[str, Arch] = {a.debian: a for a in (
    Arch("amd64", elf_machine=62, gpt_root_type="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
         k3s_asset="k3s", k3s_suffix="amd64", qemu_system="qemu-system-x86_64",
         qemu_user="x86_64", uefi="x64", ec2="x86_64", uboot_mkimage=None, kernel_boot=None),
    Arch("arm64", elf_machine=183, gpt_root_type="b921b045-1df0-41c3-af44-4c6f280d3fae",
         k3s_asset="k3s-arm64", k3s_suffix="arm64", qemu_system="qemu-system-aarch64",
         qemu_user="aarch64", uefi="aa64", ec2="arm64", uboot_mkimage="arm64",
         kernel_boot="booti"),
    Arch("armhf", elf_machine=40, gpt_root_type="69dad710-2ce4-4e3c-b16c-21a1d49abed3",
         k3s_asset="k3s-armhf", k3s_suffix="arm", qemu_system="qemu-system-arm",
         qemu_user="arm", uefi=None, ec2=None, uboot_mkimage="arm", kernel_boot="bootz"),
)}

# Names users try for the ARMv6 Raspberry Pis, as arch and as board, and why not.
ARMV6 = ("armel", "armv6", "armv6l")
ARMV6_BOARDS = ("rpi", "rpi1", "rpi-zero", "rpi-zero-w", "rpi-armel", "rpi-armv6")
ARMV6_WHY = ("is ARMv6 (Raspberry Pi 1, Zero, Zero W): k3s needs ARMv7 or newer; use arch "
             "armhf (Pi 2/3) or arm64 (Pi 3/4/5, Zero 2 W)")


def arch_facts(name: str) -> Arch:
    if name in ARMV6:
        raise OsbError(f"arch {name!r} {ARMV6_WHY}")
    try:
        return ARCHES[name]
    except KeyError:
        raise OsbError(f"unknown arch {name!r} (known: {', '.join(ARCHES)})") from None


def arch_of_elf_machine(machine: int) -> str | None:
    return next((a.debian for a in ARCHES.values() if a.elf_machine == machine), None)
