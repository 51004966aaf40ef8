"""systemd-boot on the ESP: one Boot Loader Specification entry per slot.

ESP layout:
  EFI/BOOT/BOOT<arch>.EFI       systemd-boot from the image's own systemd-boot-efi package
  loader/loader.conf            default entry, menu timeout
  loader/entries/osb-a.conf     slot A (known good: no boot counter)
  osb/<slot>/vmlinuz, initrd.img
An upgrade adds `osb-b+3.conf` with a higher priority (osbuilder.agent.upgrade.systemd_boot):
systemd-boot then counts tries down in the file name and systemd-bless-boot drops the
counter once the node passed its health gate (boot counting).
"""

from __future__ import annotations

import shutil

from osbuilder.bootloaders.bls import render_entry
from osbuilder.context import BuildContext
from osbuilder.errors import OsbError
from osbuilder.layout import SLOT_DIR, root_device

EFI_ARCH = {"amd64": "x64", "arm64": "aa64"}


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


LOADER_CONF = """\
# osbuilder: boot the slot entry of highest priority (its `version`) that still has tries
# left; press a key during start-up for the menu (both slots once an upgrade installed B).
default osb-*
timeout 0
editor no
"""


def stage_boot_files(ctx: BuildContext, slot: str = "a") -> None:
    arch = EFI_ARCH.get(ctx.board.arch)
    if arch is None:
        raise OsbError(f"{ctx.board.source}: systemd-boot needs UEFI (amd64 or arm64), "
                       f"not {ctx.board.arch}")
    src = ctx.rootfs / f"usr/lib/systemd/boot/efi/systemd-boot{arch}.efi"
    if not src.is_file():
        raise OsbError(f"{ctx.board.source}: {src.name} missing from the rootfs: "
                       "add package set 'uefi' (systemd-boot-efi)")
    esp = ctx.esp
    (esp / "EFI/BOOT").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, esp / f"EFI/BOOT/BOOT{arch.upper()}.EFI")
    (esp / "loader/entries").mkdir(parents=True, exist_ok=True)
    (esp / "loader/loader.conf").write_text(LOADER_CONF)
    (esp / f"loader/entries/osb-{slot}.conf").write_text(
        render_entry(slot, ctx.options.version, 1, kernel_options(ctx, slot)))
    kdir = esp / SLOT_DIR / slot
    kdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.rootfs / f"boot/vmlinuz-{ctx.kernel_version}", kdir / "vmlinuz")
    shutil.copyfile(ctx.rootfs / f"boot/initrd.img-{ctx.kernel_version}", kdir / "initrd.img")
