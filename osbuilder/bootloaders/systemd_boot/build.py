"""systemd-boot on the ESP: one Boot Loader Specification entry per slot.

ESP layout:
  EFI/BOOT/BOOT<arch>.EFI       systemd-boot from the image's own systemd-boot-efi package
  loader/loader.conf            default entry, menu timeout
  loader/entries/osb-a.conf     slot A (known good: no boot counter)
  osb/<slot>/vmlinuz, initrd.img
Built with Secure Boot keys, systemd-boot is signed, loader/keys/auto/ holds the fleet's
PK/KEK/db .auth files (enrolled on a machine in setup mode) and each entry starts the
slot's signed UKI (`efi /osb/<slot>/uki.efi`) instead of kernel and initrd.
An upgrade adds `osb-b+3.conf` with a higher priority (osbuilder.bootloaders.systemd_boot.chooser):
systemd-boot then counts tries down in the file name and systemd-bless-boot drops the
counter once the node passed its health gate (boot counting).
"""

from __future__ import annotations

from osbuilder.bootloaders.systemd_boot.esp import (
    populate_esp,
    populate_signed_esp,
    systemd_boot_efi,
)
from osbuilder.host.context import BuildContext
from osbuilder.host.kernel_args import kernel_args
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import root_device


def kernel_options(ctx: BuildContext, slot: str) -> str:
    b = ctx.board
    opts = [
        f"root={root_device(b.partition_table, slot)}", "rootfstype=squashfs", "ro",
        f"osb.slot={slot}", f"rauc.slot={slot}",
        # partitions are mounted by our initramfs and fstab, not auto-discovered
        "systemd.gpt_auto=0",
        *(f"console={c}" for c in b.kernel.console),
        *kernel_args(ctx),
    ]
    return " ".join(opts)


def stage_boot_files(ctx: BuildContext, slot: str = "a") -> None:
    assert ctx.kernel_version
    arch = ctx.board.arch_facts.uefi
    if arch is None:
        raise OsbError(f"{ctx.board.source}: systemd-boot needs UEFI (amd64 or arm64), "
                       f"not {ctx.board.arch}")
    src = systemd_boot_efi(ctx.rootfs, arch)
    if not src.is_file():
        raise OsbError(f"{ctx.board.source}: {src.name} missing from the rootfs: "
                       "add package set 'uefi' (systemd-boot-efi)")
    keys = ctx.trust.secure_boot
    if keys is not None:
        assert ctx.signed_loader is not None, "stage uki runs before the boot partition"
        populate_signed_esp(ctx.esp, ctx.signed_loader, arch, keys.auth_files,
                            ctx.board.secure_boot_enroll, ctx.ukis[slot], ctx.options.version,
                            slot)
        return
    populate_esp(ctx.esp, ctx.rootfs, arch, ctx.kernel_version, ctx.options.version,
                 kernel_options(ctx, slot), slot)
