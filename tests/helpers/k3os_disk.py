"""A disk image laid out the way k3OS's installer lays out a disk, with a k3s node's state
in place; made without loop devices (sfdisk on a file, mkfs into files, dd at offsets).

Every choice follows rancher/k3os@8cdfdf2:
- install.sh `setup_style`: GPT when the machine boots UEFI (`/sys/firmware/efi`), else
  `msdos`; `do_format`: `dd if=/dev/zero bs=1M count=1`, `parted -s mklabel`, then
  GPT: `mkpart primary fat32 0% 50MB` (flag esp) and `mkpart primary ext4 50MB 750MB`;
  MBR: `mkpart primary ext4 0% 700MB` (flag boot). parted's default (optimal) alignment
  puts `0%` at 1 MiB and snaps each end within +-0.5 MB of the size to the sector before
  a MiB boundary, so: GPT p1 1-48 MiB, p2 48-715 MiB; MBR p1 1-668 MiB. (The names
  parted gives GPT partitions are "primary".)
- `mkfs.vfat -F 32` + `fatlabel K3OS_GRUB`; `mkfs.ext4 -F -L K3OS_STATE`;
- `do_copy`: the ISO's k3os/ tree to K3OS_STATE, `k3os/system/growpart`, the config_url
  content as k3os/system/config.yaml (`chmod 600`); `create_opt`: k3os/data/opt;
- first boot, overlay/libexec/k3os/mode-disk `grow`: `parted resizepart N 100%` (GPT: to
  the last usable sector; MBR: the last sector), `e2fsck -f`, `resize2fs`, growpart removed;
- the running system's files (§ in k3os_state.py's doc): /var is k3os/data/var, node
  password in var/lib/rancher/k3os/node (mode-local), host keys in var/lib/rancher/k3os/ssh,
  the random host name in var/lib/rancher/k3os/hostname (libexec/k3os/boot), rancher is
  uid 1000 (libexec/k3os/bootstrap).
The k3s files (state.db a real SQLite database, TLS files, token) stand in for what k3s
writes; their bytes are random, not a working cluster's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
SECTOR = 512
GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SYSTEM_CONFIG = """\
# k3OS config, as `k3os install --config URL` fetched it (snake_case, k3OS README)
ssh_authorized_keys:
- ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl k3os-e2e
k3os:
  password: rancher-e2e
  k3s_args:
  - server
  - --disable=traefik
  labels:
    region: edge-1
  install:
    device: /dev/vda
"""
LOCAL_CONFIG = "k3os:\n  labels:\n    region: edge-1\n    rack: r7\n"


@dataclass
class K3osNode:
    """What the test node holds (secrets kept here to compare, never printed)."""

    hostname: str = "k3os-21811"
    node_password: bytes = field(default_factory=lambda: secrets.token_hex(16).encode())
    token: bytes = field(default_factory=lambda: (
        f"K10{secrets.token_hex(32)}::server:{secrets.token_hex(16)}").encode())
    system_config: str = SYSTEM_CONFIG
    role: str = "server"  # or agent


def _write(path: Path, data: bytes | str, mode: int = 0o644, uid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, uid, uid)


def state_tree(root: Path, node: K3osNode) -> Path:
    """The K3OS_STATE file system's content for a node that ran k3s; returns root."""
    sysd = root / "k3os/system"
    _write(sysd / "k3os/v0.22.2-k3s2r0/k3os", b"\x7fELF k3os stand-in\n", 0o755)
    (sysd / "k3os/current").symlink_to("v0.22.2-k3s2r0")
    _write(sysd / "k3s/v1.23.3+k3s1/k3s", b"\x7fELF k3s stand-in\n", 0o755)
    (sysd / "k3s/current").symlink_to("v1.23.3+k3s1")
    _write(sysd / "kernel/5.4.0-88-generic/initrd", b"initrd stand-in\n")
    (sysd / "kernel/current").symlink_to("5.4.0-88-generic")
    if node.system_config is not None:
        _write(sysd / "config.yaml", node.system_config, 0o600)
    _write(root / "boot/grub/grub.cfg", 'menuentry "k3OS Current" {\n'
           "  search.fs_label K3OS_STATE root\n}\n")
    data = root / "k3os/data"
    (data / "opt").mkdir(parents=True)
    k3os = data / "var/lib/rancher/k3os"
    _write(k3os / "hostname", node.hostname + "\n")
    _write(k3os / "node/password", node.node_password, 0o600)
    _write(k3os / "config.yaml", LOCAL_CONFIG, 0o600)
    _write(k3os / "config.d/10-taints.yaml", "k3os:\n  taints:\n  - edge=true:NoSchedule\n")
    for kind in ("ed25519", "rsa"):
        key = k3os / f"ssh/ssh_host_{kind}_key"
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "k3os-host", "-f",
                        str(key)], check=True)
    _write(k3os / "ssh/sshd_config", "PermitRootLogin no\n")
    k3s = data / "var/lib/rancher/k3s"
    if node.role == "server":
        _write(k3s / "server/token", node.token + b"\n", 0o600)
        _write(k3s / "server/node-token", node.token + b"\n", 0o600)
        for name in ("server-ca.crt", "client-ca.crt", "request-header-ca.crt"):
            _write(k3s / f"server/tls/{name}", "-----BEGIN CERTIFICATE-----\n"
                   f"{secrets.token_urlsafe(48)}\n-----END CERTIFICATE-----\n")
        for name in ("server-ca.key", "client-ca.key", "service.key"):
            _write(k3s / f"server/tls/{name}", "-----BEGIN EC PRIVATE KEY-----\n"
                   f"{secrets.token_urlsafe(48)}\n-----END EC PRIVATE KEY-----\n", 0o600)
        db = k3s / "server/db/state.db"
        db.parent.mkdir(parents=True)
        with sqlite3.connect(db) as c:  # kine's table (k3s-io/kine pkg/drivers/generic)
            c.execute("CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, "
                      "created INTEGER, deleted INTEGER, create_revision INTEGER, "
                      "prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB)")
            c.executemany("INSERT INTO kine (name, created, deleted, create_revision, "
                          "prev_revision, lease, value, old_value) VALUES (?,1,0,0,0,0,?,?)",
                          [(f"/registry/minions/{node.hostname}", os.urandom(512), b""),
                           ("/registry/secrets/kube-system/"
                            f"{node.hostname}.node-password.k3s", os.urandom(256), b"")])
        _write(k3s / "server/manifests/local-storage.yaml", "apiVersion: v1\nkind: List\n")
        _write(k3s / "storage/pvc-1234_default_data/db.bin", os.urandom(300 * 1024))
    _write(k3s / "agent/client-kubelet.crt", "-----BEGIN CERTIFICATE-----\nx\n")
    _write(k3s / "agent/images/.keep", b"")
    (k3s / "data").mkdir(parents=True)
    (k3s / "data/current").symlink_to("/var/lib/rancher/k3s/data/3a8d3d9")
    _write(k3s / "agent/containerd/io.containerd.content.v1.content/blobs/sha256/ab",
           os.urandom(64 * 1024))
    home = data / "home/rancher"
    _write(home / ".ssh/authorized_keys", SYSTEM_CONFIG.splitlines()[2][2:] + "\n", 0o600, 1000)
    _write(home / "notes.txt", "kept across the migration\n", 0o644, 1000)
    for d in (home, home / ".ssh"):
        if os.geteuid() == 0:
            os.chown(d, 1000, 1000)
    _write(data / "var/log/k3s-service.log", "k3s log line\n")
    _write(data / "var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n")
    return root


def _sfdisk(disk: Path, script: str) -> None:
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
                   input=script.encode(), check=True)


def make_disk(disk: Path, size: int, tree: Path, style: str = "gpt", grown: bool = True,
              work: Path | None = None, mkfs: tuple[str, ...] = ()) -> tuple[int, int]:
    """disk (a new sparse file) as k3OS's installer and first boot leave it, K3OS_STATE
    filled from tree; returns K3OS_STATE's (start, size) in bytes."""
    work = work or disk.parent
    with disk.open("wb") as f:
        f.truncate(size)
    sectors = size // SECTOR
    if style == "gpt":
        esp = (2048, 98304 - 2048)
        state_start = 98304
        state_end = (sectors - 34) if grown else 1464319  # resizepart 100%: last usable
        _sfdisk(disk, "label: gpt\nunit: sectors\n\n"
                f"start={esp[0]}, size={esp[1]}, type={GPT_ESP}, name=primary\n"
                f"start={state_start}, size={state_end - state_start + 1}, type={GPT_LINUX}, "
                "name=primary\n")
        vfat = work / "k3os-esp.vfat"
        vfat.unlink(missing_ok=True)
        subprocess.run(["mkfs.vfat", "-F", "32", "-C", str(vfat), str(esp[1] * SECTOR // 1024)],
                       check=True, capture_output=True)
        subprocess.run(["fatlabel", str(vfat), "K3OS_GRUB"], check=True, capture_output=True)
        subprocess.run(["mmd", "-i", str(vfat), "::/EFI", "::/EFI/BOOT"], check=True)
        grub = work / "BOOTX64.EFI"  # grub-install --removable (install.sh install_grub)
        grub.write_bytes(b"MZ GRUB stand-in\n")
        subprocess.run(["mcopy", "-i", str(vfat), str(grub), "::/EFI/BOOT/"], check=True)
        grub.unlink()
        _dd(vfat, disk, esp[0] * SECTOR)
        vfat.unlink()
    else:
        state_start = 2048
        state_end = (sectors - 1) if grown else 1368063
        _sfdisk(disk, f"label: dos\nunit: sectors\n\nstart={state_start}, "
                f"size={state_end - state_start + 1}, type=83, bootable\n")
        # grub-install on BIOS: boot.img in the MBR's code area, core.img from sector 1
        with disk.open("r+b") as f:
            f.write(b"GRUB boot.img stand-in".ljust(440, b"\x90"))
            f.seek(SECTOR)
            f.write(b"GRUB core.img stand-in".ljust(60 * SECTOR, b"\xcc"))
    fs = work / "k3os-state.ext4"
    fs.unlink(missing_ok=True)
    first = (1464319 if style == "gpt" else 1368063) - state_start + 1
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "K3OS_STATE", *mkfs, "-d", str(tree), str(fs),
                    f"{first * SECTOR // 1024}k"], check=True, capture_output=True)
    if grown:  # mode-disk grow: e2fsck -f, resize2fs (to the whole partition)
        part = (state_end - state_start + 1) * SECTOR
        subprocess.run(["e2fsck", "-f", "-p", str(fs)], check=True, capture_output=True)
        with fs.open("r+b") as f:
            f.truncate(part)
        subprocess.run(["resize2fs", "-f", str(fs), f"{part // 1024}K"], check=True,
                       capture_output=True)
    _dd(fs, disk, state_start * SECTOR)
    fs.unlink()
    return state_start * SECTOR, (state_end - state_start + 1) * SECTOR


def _dd(src: Path, disk: Path, offset: int) -> None:
    subprocess.run(["dd", f"if={src}", f"of={disk}", "bs=1M", f"seek={offset}",
                    "oflag=seek_bytes", "conv=notrunc,sparse", "status=none"], check=True)


def digest(path: Path) -> str:
    """sha256 of a sparse file's bytes, reading only its data (holes are hashed as their
    offsets: a 4 GiB disk image with 100 MiB in it takes a fraction of a second)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            h.update(f"{start}-{end}:".encode())
            f.seek(start)
            left = end - start
            while left:
                chunk = f.read(min(left, 1 << 22))
                h.update(chunk)
                left -= len(chunk)
            pos = end
    return h.hexdigest()


def debugfs_read(disk: Path, offset: int, path: str) -> bytes | None:
    """A file of the ext4 file system at offset in disk (no mount); None if missing."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", f"{disk}?offset={offset}"],
                       capture_output=True)
    if r.returncode != 0 or b"File not found" in r.stderr:
        return None
    return r.stdout


def debugfs_stat(disk: Path, offset: int, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"stat {path}", f"{disk}?offset={offset}"],
                          capture_output=True, text=True).stdout


class FileRegions:
    """The migration's region writes on a disk image file, loop-free (the node uses loop
    devices): file systems made in the region with mke2fs -E offset=, or in a scratch file
    copied in; `writes` records every byte range written."""

    def __init__(self, disk: Path, work: Path) -> None:
        self.disk, self.work = disk, work
        self.writes: list[tuple[int, int]] = []

    def make_data(self, span: Any, fill: Callable[[Path], None], grow_to: int) -> None:
        from osbuilder.node.install.migrate_io import mkfs_data

        stage = self.work / "data-stage"
        subprocess.run(["rm", "-rf", str(stage)], check=True)
        stage.mkdir()
        fill(stage)
        subprocess.run([*mkfs_data(span.size, grow_to, f"offset={span.start},"), "-d", str(stage),
                        str(self.disk), f"{span.size // 1024}k"], check=True,
                       capture_output=True)
        r = subprocess.run(["e2fsck", "-f", "-n", f"{self.disk}?offset={span.start}"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
        self.writes.append((span.start, span.end))

    def write_image(self, span: Any, src: Path, say: Callable[[str], None]) -> None:
        _dd(src, self.disk, span.start)
        self.writes.append((span.start, span.start + src.stat().st_size))

    def make_boot(self, span: Any, fill: Callable[[Path], None]) -> None:
        stage = self.work / "boot-stage"
        subprocess.run(["rm", "-rf", str(stage)], check=True)
        stage.mkdir()
        fill(stage)
        vfat = self.work / "boot.vfat"
        vfat.unlink(missing_ok=True)
        subprocess.run(["mkfs.vfat", "-F", "32", "-n", "OSB_BOOT", "-C", str(vfat),
                        str(span.size // 1024)], check=True, capture_output=True)
        subprocess.run(["mcopy", "-s", "-i", str(vfat), *map(str, stage.iterdir()), "::/"],
                       check=True)
        subprocess.run(["dd", f"if={vfat}", f"of={self.disk}", "bs=1M",
                        f"seek={span.start}", "oflag=seek_bytes", "conv=notrunc",
                        "status=none"], check=True)
        self.writes.append((span.start, span.end))


def image_root(root: Path, kernel: str = "6.12.0-test-amd64") -> Path:
    """The files populate_esp takes from an image (stand-ins): systemd-boot, kernel, initrd."""
    _write(root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi", b"MZ systemd-boot stand-in")
    _write(root / f"boot/vmlinuz-{kernel}", b"MZ kernel stand-in")
    _write(root / f"boot/initrd.img-{kernel}", b"initrd stand-in")
    _write(root / "etc/passwd", "root:x:0:0::/root:/bin/sh\nosb:x:1000:1000::/home/osb:/bin/sh\n"
           "rancher:x:1001:1001::/home/rancher:/bin/bash\n")
    _write(root / "etc/group", "root:x:0:\nosb:x:1000:\nrancher:x:1001:\n")
    return root
