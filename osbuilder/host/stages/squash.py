"""Stage squash: the rootfs as one zstd squashfs, the content of a root slot.

mksquashfs takes SOURCE_DATE_EPOCH from the environment as the superblock time and
clamps newer file times to it; with its sorted file order, the same rootfs gives the
same bytes.
"""

from __future__ import annotations

from osbuilder.host.context import BuildContext
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import MIB
from osbuilder.shared.run import run

ZSTD_LEVEL = 6
BLOCK_SIZE = "128K"


def squash(ctx: BuildContext) -> None:
    out = ctx.work / "root.squashfs"
    # zstd level 6, not mksquashfs's default 15: on a qemu-amd64 rootfs 9x faster
    # (3.4 s instead of 31.5 s here) for a 1.3 % larger squashfs; squash was most of a
    # warm build.
    # 128 KiB blocks, not 1 MiB: a boot reads many small files (units, libraries, Python
    # modules) and each read of a cold block decompresses all of it. On qemu-amd64 under
    # TCG the agent's cold imports took 3.7-4.4 s from 1 MiB blocks and 1.3-1.8 s from
    # 128 KiB ones (as fast as lz4 or no compression), for a 5 % larger root.
    run(["mksquashfs", ctx.rootfs, out, "-noappend", "-no-progress", "-quiet",
         "-comp", "zstd", "-Xcompression-level", str(ZSTD_LEVEL), "-b", BLOCK_SIZE],
        env=ctx.env)
    size = out.stat().st_size
    limit = ctx.board.sizes.root_mib * MIB
    if size > limit:
        raise OsbError(
            f"root image is {size / MIB:.0f} MiB but a root slot holds {limit // MIB} MiB: "
            f"raise sizes.root_mib in {ctx.board.source}"
        )
    ctx.squashfs = out
    ctx.progress.say(f"    root.squashfs {size / 1e6:.1f} MB")
