"""Format iso: a hybrid UEFI live/installer image (CD/DVD, or `dd` to a USB stick).

El Torito's EFI boot image is a small FAT (systemd-boot, kernel, initrd, three entries:
live, install which asks on the console when no install.device is configured, and
migrate, which turns a disk k3OS installed into an osbuilder disk in place); the
same FAT is appended as a GPT ESP so firmware finds it on a USB stick too. The ISO 9660
file system (label OSB_LIVE) holds the root squashfs and the build's --config, which the
live system reads as its boot partition. xorriso takes every date from SOURCE_DATE_EPOCH:
same inputs, same bytes.
"""

from __future__ import annotations

import shutil

from osbuilder.bootloaders import bootloader
from osbuilder.bootloaders.systemd_boot.entries import render_entry
from osbuilder.bootloaders.systemd_boot.esp import systemd_boot_efi
from osbuilder.host.context import Artifact, BuildContext
from osbuilder.host.formats import live_common as live_fmt
from osbuilder.host.fsimage import clamp_times, make_vfat
from osbuilder.shared import live
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import MIB
from osbuilder.shared.run import run

ESP_LABEL = "OSB_ISOEFI"
ESP_SLACK_MIB = 4  # FAT tables and directories on top of the files
LOADER_CONF = """\
# osbuilder live/installer: the live system unless you pick "install" within 5 s
default osb-live.conf
timeout 5
editor no
"""
ENTRIES = {  # entry name: (osb.mode, title)
    "osb-live": ("live", "live system (installs if install.device is configured)"),
    "osb-install": ("install", "install to disk (asks on the console)"),
    "osb-migrate": ("migrate", "migrate a k3OS disk to osbuilder, keeping its cluster state"),
}


def stage_live_esp(ctx: BuildContext) -> int:
    """The El Torito / appended ESP tree; returns its size in MiB."""
    arch = ctx.board.arch_facts.uefi
    if arch is None or not bootloader(ctx.board.bootloader).uefi:
        raise OsbError(f"--format iso: board {ctx.board.name} does not boot UEFI with "
                       "systemd-boot (boards with bootloader systemd-boot only)")
    esp = ctx.work / "iso-esp"
    (esp / "EFI/BOOT").mkdir(parents=True)
    shutil.copyfile(systemd_boot_efi(ctx.rootfs, arch), esp / f"EFI/BOOT/BOOT{arch.upper()}.EFI")
    (esp / "loader/entries").mkdir(parents=True)
    (esp / "loader/loader.conf").write_text(LOADER_CONF)
    (esp / "osb/live").mkdir(parents=True)
    shutil.copyfile(live_fmt.kernel(ctx), esp / "osb/live/vmlinuz")
    shutil.copyfile(live_fmt.initrd(ctx), esp / "osb/live/initrd.img")
    for name, (mode, title) in ENTRIES.items():
        (esp / f"loader/entries/{name}.conf").write_text(render_entry(
            "live", ctx.options.version, 1, live_fmt.options(ctx, live.ISO_LABEL, mode), title))
    used = sum(f.stat().st_size for f in esp.rglob("*") if f.is_file())
    return -(-used // MIB) + ESP_SLACK_MIB


def write_iso(ctx: BuildContext) -> None:
    assert ctx.squashfs is not None
    seed = f"{ctx.board.name}:{ctx.options.version}:{ctx.options.source_date_epoch}"
    esp_img = make_vfat(ctx, ctx.work / "iso-esp.vfat", stage_live_esp(ctx), ESP_LABEL,
                        ctx.work / "iso-esp", seed)
    tree = ctx.work / "iso-root"
    (tree / "osb").mkdir(parents=True)
    # a hard link, not a copy: the squashfs is most of the ISO
    (tree / live.SQUASHFS_ON_MEDIUM).hardlink_to(ctx.squashfs)
    if ctx.options.config is not None:
        shutil.copyfile(ctx.options.config, tree / live.CONFIG_ON_MEDIUM)
    clamp_times(tree, ctx.options.source_date_epoch)
    iso = ctx.work / f"{ctx.basename}.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", live.ISO_LABEL,
         "-r", "-J", "-joliet-long",
         # ISO 9660 in GPT partition 1 from 16 blocks on (mountable from a USB stick), the
         # ESP appended as partition 2, and El Torito pointing at that same ESP
         "-partition_offset", "16",
         "-append_partition", "2", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", esp_img,
         "-appended_part_as_gpt",
         "-c", "/boot.catalog", "-e", "--interval:appended_partition_2:all::",
         "-no-emul-boot",
         tree], env=ctx.env)
    ctx.artifacts.append(Artifact("iso", iso))
    ctx.progress.say(f"    {iso.name}: {iso.stat().st_size / MIB:.0f} MiB")
