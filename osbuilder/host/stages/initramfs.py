"""Stage initramfs: build the initrd once, after the overlay laid our hooks and modules.

The initrd is cached by what makes it: the rootfs tarball (kernel, initramfs-tools, the
binaries hooks copy), SOURCE_DATE_EPOCH, and the rendered files initramfs-tools reads
from the root after the overlay (INPUTS: its configuration, hooks and scripts, modprobe
and udev rules, fstab). The node package and k3s are not among them: a build that only
changed the agent reuses the initrd (update-initramfs takes minutes under qemu-user).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from osbuilder.host.chroot import chroot_run
from osbuilder.host.context import BuildContext
from osbuilder.host.stages.root_cache import evict, locked, rootfs_identity

INPUTS = ("etc/initramfs-tools", "usr/share/initramfs-tools", "etc/modprobe.d",
          "usr/lib/modprobe.d", "etc/udev", "usr/lib/udev/rules.d", "etc/fstab")
KEEP_PER_BOARD = 4


def tree_digest(root: Path, paths: tuple[str, ...] = INPUTS) -> str:
    """sha256 over the files (names, modes, link targets, bytes) under paths of root."""
    h = hashlib.sha256()
    for top in paths:
        base = root / top
        found = [base] if not base.is_dir() or base.is_symlink() else sorted(base.rglob("*"))
        for f in found:
            if not (f.exists() or f.is_symlink()):
                continue
            st = f.lstat()
            h.update(f"{f.relative_to(root)}\0{st.st_mode:o}\0".encode())
            if f.is_symlink():
                h.update(os.readlink(f).encode())
            elif f.is_file():
                h.update(f.read_bytes())
    return h.hexdigest()


def initramfs_key(ctx: BuildContext) -> str | None:
    rootfs = rootfs_identity(ctx)
    if rootfs is None:
        return None
    inputs = [rootfs, ctx.kernel_version, ctx.options.source_date_epoch,
              tree_digest(ctx.rootfs), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:20]


def build_initramfs(ctx: BuildContext) -> None:
    assert ctx.kernel_version
    initrd = ctx.rootfs / "boot" / f"initrd.img-{ctx.kernel_version}"
    key = initramfs_key(ctx)
    cache = ctx.options.cache_dir / "stages" / "initramfs"
    cached = cache / f"{ctx.board.name}-{key}.img"
    fresh = ctx.options.rebuild or ctx.options.refresh
    if key is not None and not fresh:
        with locked(cache):
            hit = cached.is_file()
            if hit:
                shutil.copyfile(cached, initrd)
                os.utime(cached)
        if hit:
            ctx.progress.say(f"    {initrd.name}: cached ({cached.name})")
            return
    chroot_run(ctx.rootfs, ["update-initramfs", "-c", "-k", ctx.kernel_version], env=ctx.env)
    ctx.progress.say(f"    {initrd.name}: {initrd.stat().st_size / 1e6:.1f} MB")
    if key is not None:
        cache.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f".{cached.name}.{os.getpid()}")
        shutil.copyfile(initrd, part)
        with locked(cache):
            os.replace(part, cached)
            evict(cache, ctx.board.name, KEEP_PER_BOARD, ".img")
