"""Sanity checks on an unpacked rootfs, whatever made it (mmdebstrap or a user tarball):
right architecture, an init to boot, and a kernel to put in the boot slot."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from osbuilder.host.boards import Board
from osbuilder.shared.arches import arch_of_elf_machine
from osbuilder.shared.errors import OsbError

ELF_MAGIC = b"\x7fELF"
MAX_LINKS = 40


def resolve_in_root(root: Path, path: str) -> Path:
    """Follow symlinks as the image would see them: absolute links point inside root,
    never at the host (/bin/sh -> dash, /bin -> usr/bin on merged-/usr systems)."""
    parts = list(PurePosixPath(path).parts[1:])
    done = PurePosixPath("/")
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done.parent
            continue
        candidate = root / (done / part).relative_to("/")
        if candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise OsbError(f"rootfs: too many symbolic links resolving {path}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                done = PurePosixPath("/")
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        done = done / part
    return root / done.relative_to("/")


def elf_machine(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        raise OsbError(f"rootfs: {path.name} is not an ELF executable")
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_rootfs(root: Path, board: Board, source: str) -> str:
    """Raise OsbError naming what is wrong with the rootfs; return its kernel version."""
    sh = resolve_in_root(root, "/bin/sh")
    if not sh.is_file():
        raise OsbError(f"{source}: no /bin/sh: not a root file system")
    machine = elf_machine(sh)
    if machine != board.arch_facts.elf_machine:
        found = arch_of_elf_machine(machine) or f"ELF machine {machine}"
        raise OsbError(f"{source}: /bin/sh is built for {found}, but board {board.name} is "
                       f"{board.arch}: use a rootfs of the board's architecture")
    if not resolve_in_root(root, "/sbin/init").is_file():
        raise OsbError(f"{source}: no /sbin/init: the rootfs cannot boot (install systemd-sysv)")
    boot = resolve_in_root(root, "/boot")
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in boot.glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise OsbError(f"{source}: expected exactly one kernel in /boot, found "
                       f"{kernels or 'none'} (install {board.kernel.package} and "
                       "initramfs-tools)")
    if not resolve_in_root(root, "/usr/sbin/update-initramfs").is_file():
        raise OsbError(f"{source}: no update-initramfs (install initramfs-tools)")
    return kernels[0]
