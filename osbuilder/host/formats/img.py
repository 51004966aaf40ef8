"""Format img: the raw disk image (write with dd or `osbuilder flash`), optionally .img.zst."""

from __future__ import annotations

from osbuilder.host.context import Artifact, BuildContext
from osbuilder.shared.run import run


def write_img(ctx: BuildContext) -> None:
    assert ctx.disk_image is not None
    ctx.artifacts.append(Artifact("img", ctx.disk_image))
    if ctx.options.compress:
        zst = ctx.disk_image.with_name(ctx.disk_image.name + ".zst")
        # the payload is mostly zstd squashfs already: a fast level loses nothing
        run(["zstd", "-q", "-3", "-T0", "--sparse", "-o", zst, ctx.disk_image])
        ctx.artifacts.append(Artifact("img.zst", zst))
