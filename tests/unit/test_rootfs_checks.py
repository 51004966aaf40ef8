"""Checks on a rootfs from any backend: architecture from /bin/sh's ELF header, an init,
a kernel; symlinks resolved inside the rootfs, never on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.stages.rootfs_checks import check_rootfs, elf_machine, resolve_in_root
from osbuilder.shared.errors import OsbError

BOARD = load_board("qemu-amd64")
X86_64, AARCH64 = 62, 183


def elf(machine: int) -> bytes:
    # e_ident: magic, 64-bit, little-endian, version; e_type at 16, e_machine at 18
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (2).to_bytes(2, "little") \
        + machine.to_bytes(2, "little") + b"\0" * 44


def make_rootfs(root: Path, machine: int = X86_64) -> Path:
    """A merged-/usr Debian shape: relative and absolute links, as mmdebstrap makes."""
    for d in ("usr/bin", "usr/sbin", "usr/lib/systemd", "boot"):
        (root / d).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "sbin").symlink_to("usr/sbin")
    (root / "lib").symlink_to("usr/lib")
    (root / "usr/bin/dash").write_bytes(elf(machine))
    (root / "usr/bin/sh").symlink_to("dash")
    (root / "usr/lib/systemd/systemd").write_bytes(elf(machine))
    (root / "usr/sbin/init").symlink_to("/lib/systemd/systemd")
    (root / "usr/sbin/update-initramfs").write_text("#!/bin/sh\n")
    (root / "boot/vmlinuz-6.12.0-1-amd64").write_bytes(b"kernel")
    return root


def test_good_rootfs_gives_its_kernel(tmp_path: Path) -> None:
    assert check_rootfs(make_rootfs(tmp_path), BOARD, "t.tar") == "6.12.0-1-amd64"


def test_arch_mismatch(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"t\.tar: /bin/sh is built for arm64, but board "
                                       r"qemu-amd64 is amd64"):
        check_rootfs(make_rootfs(tmp_path, AARCH64), BOARD, "t.tar")


def test_missing_init(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "usr/lib/systemd/systemd").unlink()
    with pytest.raises(OsbError, match=r"t.tar: no /sbin/init: the rootfs cannot boot"):
        check_rootfs(root, BOARD, "t.tar")


def test_no_kernel(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "boot/vmlinuz-6.12.0-1-amd64").unlink()
    with pytest.raises(OsbError, match=r"found none \(install linux-image-cloud-amd64"):
        check_rootfs(root, BOARD, "t.tar")


def test_absolute_links_stay_inside_the_rootfs(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "usr/bin/sh").unlink()
    (root / "usr/bin/sh").symlink_to("/usr/bin/env")  # exists on the host, not in root
    assert resolve_in_root(root, "/bin/sh") == root / "usr/bin/env"
    with pytest.raises(OsbError, match="no /bin/sh: not a root file system"):
        check_rootfs(root, BOARD, "t.tar")


def test_link_loop_and_not_elf(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OsbError, match="too many symbolic links"):
        resolve_in_root(tmp_path, "/a")
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(OsbError, match="script is not an ELF executable"):
        elf_machine(tmp_path / "script")
