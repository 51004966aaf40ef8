"""Stage assemble: partition and write the disk image without loop devices.

Each file system is made in its own file (mkfs.vfat + mcopy, the squashfs, mkfs.ext4),
then copied at its offset into a sparse disk file partitioned by sfdisk. Volume ids,
UUIDs and times come from the build seed and SOURCE_DATE_EPOCH: same inputs, same bytes.
"""

from __future__ import annotations

from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.host.fsimage import clamp_times, make_vfat
from osbuilder.shared.layout import (
    LABEL_BOOT,
    LABEL_DATA,
    MIB,
    Partition,
    root_label,
    stable_uuid,
)
from osbuilder.shared.run import run


def make_ext4(ctx: BuildContext, part: Partition, seed: str) -> Path:
    img = ctx.work / "data.ext4"
    content = ctx.work / "data-content"
    content.mkdir()
    clamp_times(content, ctx.options.source_date_epoch)
    fs_uuid = stable_uuid(seed, "data-fs")
    run(["mkfs.ext4", "-q", "-F", "-L", part.label, "-U", fs_uuid,
         "-E", f"hash_seed={stable_uuid(seed, 'data-hash')},root_owner=0:0,nodiscard",
         "-d", content, img, f"{part.size_mib}M"],
        env={**ctx.env, "E2FSPROGS_FAKE_TIME": str(ctx.options.source_date_epoch)})
    return img


def write_at(disk: Path, src: Path, part: Partition) -> None:
    run(["dd", f"if={src}", f"of={disk}", "bs=1M", f"seek={part.start_mib}",
         "conv=notrunc,sparse", "status=none"])


def assemble(ctx: BuildContext) -> None:
    assert ctx.squashfs is not None
    seed = f"{ctx.board.name}:{ctx.options.version}:{ctx.options.source_date_epoch}"
    layout = ctx.board.disk_layout(seed)
    ctx.layout = layout
    disk = ctx.work / f"{ctx.basename}.img"
    with disk.open("wb") as f:
        f.truncate(layout.total_bytes)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
        input=layout.sfdisk_script().encode())
    boot = layout.by_label(LABEL_BOOT)
    write_at(disk, make_vfat(ctx, ctx.work / "boot.vfat", boot.size_mib, boot.label, ctx.esp,
                             seed), boot)
    write_at(disk, ctx.squashfs, layout.by_label(root_label("a")))
    if ctx.trust.encryption != "luks":
        write_at(disk, make_ext4(ctx, layout.by_label(LABEL_DATA), seed),
                 layout.by_label(LABEL_DATA))
    # else the data partition stays blank (a hole): the node's initramfs makes it LUKS2 on
    # first boot, with a key sealed to that node's TPM, and never formats anything else
    ctx.disk_image = disk
    ctx.progress.say(f"    {disk.name}: {layout.total_bytes / MIB:.0f} MiB, "
                     f"{len(layout.partitions)} partitions ({layout.table.upper()})")
