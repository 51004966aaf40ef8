"""Stage initramfs: build the initrd once, after the overlay laid our hooks and modules."""

from __future__ import annotations

from osbuilder.host.chroot import chroot_run
from osbuilder.host.context import BuildContext


def build_initramfs(ctx: BuildContext) -> None:
    assert ctx.kernel_version
    chroot_run(ctx.rootfs, ["update-initramfs", "-c", "-k", ctx.kernel_version], env=ctx.env)
    initrd = ctx.rootfs / "boot" / f"initrd.img-{ctx.kernel_version}"
    ctx.progress.say(f"    {initrd.name}: {initrd.stat().st_size / 1e6:.1f} MB")

