"""systemd-boot on the ESP: one Boot Loader Specification entry per slot.

ESP layout:
  EFI/BOOT/BOOT<arch>.EFI       systemd-boot from the image's own systemd-boot-efi package
  loader/loader.conf            default entry, menu timeout
  loader/entries/osb-a.conf     slot A (known good: no boot counter)
  osb/<slot>/vmlinuz, initrd.img
An upgrade adds `osb-b+3.conf` with a higher priority (osbuilder.bootloaders.systemd_boot.chooser):
systemd-boot then counts tries down in the file name and systemd-bless-boot drops the
counter once the node passed its health gate (boot counting).
"""

from __future__ import annotations

from osbuilder.bootloaders.systemd_boot.esp import populate_esp, systemd_boot_efi
from osbuilder.host.context import BuildContext
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
        *b.kernel.cmdline,
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
    populate_esp(ctx.esp, ctx.rootfs, arch, ctx.kernel_version, ctx.options.version,
                 kernel_options(ctx, slot), slot)
