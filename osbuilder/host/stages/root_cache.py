"""Stages root-cache and root-store: the root squashfs cached by everything it is made of,
so that a rebuild whose root did not change (a new --config, another format, the same
build again) skips the stages from rootfs to squash (ROOT_STAGES in stages/__init__.py).

The key hashes the inputs of those stages: the rootfs tarball (mmdebstrap's cache key,
or the bytes of a --rootfs-tarball), the board, the image version, SOURCE_DATE_EPOCH,
k3s (version, sha256, air-gap images), the keyring, the trust files stage trust-files puts
in the root (db certificate, PCR public key; LUKS data or not), the whole osbuilder source
tree (the node package, the overlays and the stages' own code all shape the root) and its
git revision (the manifest records it). Same key, same bytes: the stages are reproducible.
The DIB backend is not cached here: its tarball key is only known once DIB ran.

On a hit the later stages still find in ctx.rootfs the few files they copy out of the
root (kernel, initrd, device trees, boot loader binaries, the manifest: BOOT_SOURCES),
unpacked from the cached squashfs, and ctx.rootfs_tar names the rootfs tarball for the
SBOM. --rebuild or --refresh builds the root again (and replaces the entry).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import osbuilder
from osbuilder.host import git_revision
from osbuilder.host.context import BuildContext
from osbuilder.host.download import sha256_file
from osbuilder.host.stages.rootfs import cache_key, mmdebstrap_argv
from osbuilder.host.stages.seal import MANIFEST
from osbuilder.shared.run import run

# what the stages after squash read from ctx.rootfs (boot partition, UKIs, ISO, PXE, SBOM)
BOOT_SOURCES = ("boot", "usr/lib/linux-image-*", "usr/lib/systemd/boot/efi", "usr/lib/u-boot",
                "usr/lib/raspi-firmware", "usr/lib/os-release", MANIFEST)
KEEP_PER_BOARD = 2  # root entries kept per board: hundreds of MB each
META = "meta.json"
PACKAGE_DIR = Path(osbuilder.__file__).resolve().parent


@functools.cache
def source_digest(package: Path = PACKAGE_DIR) -> str:
    """sha256 over the osbuilder package's files (names and bytes), byte-code left out."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        rel = f.relative_to(package)
        if f.is_file() and "__pycache__" not in rel.parts and f.suffix != ".pyc":
            h.update(f"{rel}\0{f.stat().st_size}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def rootfs_identity(ctx: BuildContext) -> str | None:
    """What names the rootfs content before it is unpacked; None: not known in advance."""
    b = ctx.board
    if b.rootfs_tarball is not None:
        return "tarball:" + sha256_file(b.rootfs_tarball) if b.rootfs_tarball.is_file() \
            else None
    if b.dib is not None:
        return None
    return f"mmdebstrap:{b.name}-{cache_key(mmdebstrap_argv(ctx, Path('OUT')), Path('OUT'))}"


def root_key(ctx: BuildContext) -> str | None:
    rootfs = rootfs_identity(ctx)
    if rootfs is None or ctx.k3s is None:
        return None
    o, k = ctx.options, ctx.k3s
    inputs = {
        "rootfs": rootfs, "board": repr(ctx.board), "version": o.version,
        "epoch": o.source_date_epoch,
        "k3s": [k.version, k.sha256,
                sha256_file(k.airgap_images) if k.airgap_images else None],
        "keyring": sha256_file(o.keyring) if o.keyring else None,
        # stage trust-files: the public keys in the root, and the data repart definition
        "trust": [ctx.trust.encryption] + ([sha256_file(ctx.trust.secure_boot.db_cert),
                                            sha256_file(ctx.trust.secure_boot.pcr_pub)]
                                           if ctx.trust.secure_boot else []),
        "source": source_digest(), "revision": git_revision.revision(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def entry_dir(ctx: BuildContext, key: str) -> Path:
    return ctx.options.cache_dir / "stages" / "root" / f"{ctx.board.name}-{key}"


def copy(src: Path, dest: Path) -> None:
    # a copy, never a link: later stages (verity, bundles) may write next to or into it
    run(["cp", "--reflink=auto", "--sparse=always", src, dest])


def restore_root(ctx: BuildContext) -> None:
    o = ctx.options
    if o.rebuild or o.refresh:
        ctx.progress.say("    building the root (--rebuild/--refresh)")
    ctx.root_key = root_key(ctx)
    if ctx.root_key is None:
        ctx.progress.say("    not cached: the rootfs is only known once built (backend dib)")
        return
    entry = entry_dir(ctx, ctx.root_key)
    if o.rebuild or o.refresh:
        return
    with locked(entry.parent):
        if not (entry / META).is_file():
            return
        meta = json.loads((entry / META).read_text())
        tarball = Path(meta.get("rootfs_tar") or "/nonexistent")
        if not tarball.is_file():  # the SBOM names the rootfs tarball: build the root again
            ctx.progress.say(f"    cached root {entry.name} without its rootfs tarball: "
                             "building")
            return
        ctx.rootfs_tar = tarball
        ctx.squashfs = ctx.work / "root.squashfs"
        copy(entry / "root.squashfs", ctx.squashfs)
        copy(entry / "manifest.json", ctx.work / f"{ctx.basename}.manifest.json")
        os.utime(entry)  # most recently used: kept longest
    ctx.rootfs.mkdir()
    # unsquashfs exits 0 when a pattern matches nothing (boards differ in these paths)
    run(["unsquashfs", "-q", "-n", "-d", ctx.rootfs, "-f", ctx.squashfs, *BOOT_SOURCES])
    ctx.kernel_version = meta["kernel_version"]
    ctx.root_cached = True
    ctx.progress.say(f"    cached root {entry.name}: the stages up to squash are skipped")


def store_root(ctx: BuildContext) -> None:
    if ctx.root_cached or ctx.root_key is None:
        return
    assert ctx.squashfs is not None and ctx.kernel_version is not None
    entry = entry_dir(ctx, ctx.root_key)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ctx.cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
    copy(ctx.squashfs, tmp / "root.squashfs")
    copy(ctx.work / f"{ctx.basename}.manifest.json", tmp / "manifest.json")
    (tmp / META).write_text(json.dumps({"kernel_version": ctx.kernel_version,
                                        "rootfs_tar": str(ctx.rootfs_tar),
                                        "stored": int(time.time())}) + "\n")
    with locked(entry.parent):
        shutil.rmtree(entry, ignore_errors=True)  # --rebuild: replace the old entry
        os.replace(tmp, entry)
        evict(entry.parent, ctx.board.name)
    ctx.progress.say(f"    root stored in the cache ({entry.name})")


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The cache folder to this build alone while it reads, replaces or evicts entries:
    builds sharing a cache (`make image` beside `make test-all`, two test workers) would
    otherwise evict or replace an entry another is copying. Held for copies, never for a
    stage's work; released when the build exits, however it ends."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def evict(folder: Path, board: str, keep: int = KEEP_PER_BOARD, suffix: str = "") -> None:
    """Remove all but the `keep` most recently used cache entries of the board in folder:
    `<board>-<20 hex digits><suffix>`, folders (the root) or files (the initramfs)."""
    name = re.compile(rf"{re.escape(board)}-[0-9a-f]{{20}}{re.escape(suffix)}")
    entries = sorted((d for d in folder.iterdir() if name.fullmatch(d.name)),
                     key=lambda d: d.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
