"""Stage rootfs: Debian trixie via mmdebstrap into a cached tarball, unpacked for the build.
Other backends: `tarball` (below) and `dib` (rootfs_dib.py); every rootfs gets the same
checks (rootfs_checks.py).

The tarball is cached under <cache>/rootfs/<key>.tar where key hashes everything that
changes its content (suite, arch, mirror, components, packages, hooks). The initramfs
is not built here: update-initramfs is diverted during the install and run once, after
the overlay, by the initramfs stage (under emulation it is the slowest step).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.host.stages.rootfs_checks import check_rootfs
from osbuilder.host.stages.rootfs_dib import build_dib_tarball
from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run

DIVERT_INITRAMFS = (
    'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs'
    ' && ln -s /bin/true "$1/usr/sbin/update-initramfs"'
)
UNDIVERT_INITRAMFS = (
    'rm "$1/usr/sbin/update-initramfs"'
    ' && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs'
)
# Documentation and translations are dead weight on a headless node.
DPKG_EXCLUDES = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
]


def mmdebstrap_argv(ctx: BuildContext, out: Path) -> list[str]:
    b = ctx.board
    packages = list(b.all_packages())
    sources = [b.mirror]
    if b.kernel.suite and b.kernel.suite != b.suite:
        # apt's pkg/release: the kernel (and what it needs newer) from that suite only
        packages[packages.index(b.kernel.package)] = f"{b.kernel.package}/{b.kernel.suite}"
        sources.append(f"deb {b.mirror} {b.kernel.suite} {' '.join(b.components)}")
    argv = [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
        f"--architectures={b.arch}",
        f"--components={','.join(b.components)}",
        f"--include={','.join(packages)}",
        f"--essential-hook={DIVERT_INITRAMFS}",
        f"--customize-hook={UNDIVERT_INITRAMFS}",
    ]
    argv += [f"--dpkgopt={o}" for o in DPKG_EXCLUDES]
    return [*argv, b.suite, str(out), *sources]


def cache_key(argv: list[str], out: Path) -> str:
    # the output path is not an input
    return hashlib.sha256(json.dumps([a for a in argv if a != str(out)]).encode()
                          ).hexdigest()[:20]


def build_rootfs(ctx: BuildContext) -> None:
    if ctx.board.rootfs_tarball is not None:
        return from_tarball(ctx, ctx.board.rootfs_tarball)
    if ctx.board.dib is not None:
        tarball = build_dib_tarball(ctx, ctx.board.dib)
        return unpack(ctx, tarball, f"diskimage-builder rootfs {tarball}")
    cache = ctx.options.cache_dir / "rootfs"
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(mmdebstrap_argv(ctx, Path("OUT")), Path("OUT"))
    tarball = cache / f"{ctx.board.name}-{key}.tar"
    if tarball.is_file() and not ctx.options.refresh:
        ctx.progress.say(f"    cached rootfs {tarball.name}")
    else:
        # this build's own name: two builds of one board sharing a cache (make image
        # beside the tests) each write their own, and the last whole one renamed wins
        for stale in stale_parts(tarball):
            stale.unlink(missing_ok=True)
        part = tarball.with_name(f"{tarball.name}.{os.getpid()}.part")
        ctx.cleanup.callback(part.unlink, missing_ok=True)
        ctx.progress.say(f"    mmdebstrap {ctx.board.suite}/{ctx.board.arch}: "
                         f"{len(ctx.board.all_packages())} packages")
        run(mmdebstrap_argv(ctx, part), env=ctx.env)
        os.replace(part, tarball)
    unpack(ctx, tarball, f"rootfs built for {ctx.board.name}")


def stale_parts(tarball: Path) -> list[Path]:
    """The half-written `<tarball>.<pid>.part` files of builds no longer running (killed
    before their cleanup ran): hundreds of MB each."""
    stale = []
    for part in tarball.parent.glob(f"{tarball.name}.*.part"):
        pid = part.name[len(tarball.name) + 1:-len(".part")]
        if pid.isdigit() and not process_alive(int(pid)):
            stale.append(part)
    return stale


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


# Mount points other tools leave out of their tarballs (DIB excludes ./proc and ./sys,
# container exports often /dev): the chroot stages and the booted root need them.
MOUNT_POINTS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "tmp": 0o1777}


def unpack(ctx: BuildContext, tarball: Path, source: str) -> None:
    ctx.rootfs_tar = tarball
    ctx.rootfs.mkdir()
    run(["tar", "-C", ctx.rootfs, "--numeric-owner", "--xattrs", "--xattrs-include=*",
         "-xpf", tarball])
    for name, mode in MOUNT_POINTS.items():
        path = ctx.rootfs / name
        if not path.exists() and not path.is_symlink():
            path.mkdir()
            path.chmod(mode)  # not through mkdir: the umask would clear bits
    ctx.kernel_version = check_rootfs(ctx.rootfs, ctx.board, source)


def from_tarball(ctx: BuildContext, tarball: Path) -> None:
    """Backend `tarball`: any rootfs tarball (exported from a container, built by another
    tool), checked like our own; tar detects its compression."""
    source = f"rootfs tarball {tarball}"
    if not tarball.is_file():
        raise OsbError(f"{source}: no such file (rootfs.path in {ctx.board.source})")
    ctx.progress.say(f"    {source}")
    unpack(ctx, tarball, source)
