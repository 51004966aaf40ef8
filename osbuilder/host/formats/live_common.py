"""What the live formats (iso, pxe) share: the live kernel options of a board, and the
kernel and initrd of the build."""

from __future__ import annotations

from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.host.kernel_args import kernel_args
from osbuilder.shared import live


def options(ctx: BuildContext, source: str, mode: str) -> str:
    k = ctx.board.kernel
    return live.kernel_options(source, mode, k.console, kernel_args(ctx))


def kernel(ctx: BuildContext) -> Path:
    return ctx.rootfs / f"boot/vmlinuz-{ctx.kernel_version}"


def initrd(ctx: BuildContext) -> Path:
    return ctx.rootfs / f"boot/initrd.img-{ctx.kernel_version}"
