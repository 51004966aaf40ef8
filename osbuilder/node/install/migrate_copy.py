"""What of a k3OS node's data goes where on osbuilder's data partition, and the copy itself
(folder to folder: the k3OS file system mounted read-only, the new data file system).

osbuilder's data partition holds /var (the upper layer of the /var overlay), /home, /opt,
/root and the persistent part of /etc (/etc/rancher); see the initramfs's local-bottom
script. k3OS's running root is K3OS_STATE:/k3os/data. Kept:
- var/lib (k3s's data dir with its datastore, TLS and token; k3OS's local config and
  node password; what workloads keep under /var/lib, e.g. local-path volumes), less the
  state of k3OS's Alpine userland that Debian's /var/lib must not see (LEFT_BEHIND);
- var/log as var/log/k3os (k3OS's logs, beside Debian's), var/local, var/opt;
- home (k3OS's `rancher` is uid 1000, osbuilder's is another: its files are given the
  image's rancher), opt, root;
plus, derived: etc/rancher/node/password (k3s reads it there), the SSH host keys and the
persisted host name where the osbuilder image looks for them, and a record of the
migration (no secrets in it).

The copy never follows a symlink (each is copied as a symlink), keeps hard links, sparse
files, modes, owners, extended attributes (file capabilities, ACLs, overlay whiteouts in
container snapshots) and times, and refuses what it cannot copy exactly.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.node.install.k3os_state import K3osState, kind
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import write_atomic
from osbuilder.shared.layout import MIB

KEEP = (("var/lib", "var/lib"), ("var/log", "var/log/k3os"), ("var/local", "var/local"),
        ("var/opt", "var/opt"), ("home", "home"), ("opt", "opt"), ("root", "root"))
# /var/lib entries of k3OS's Alpine userland (rancher/k3os images/00-base, overlay/etc):
# package, network and session state that would shadow Debian's own under the overlay
LEFT_BEHIND = ("var/lib/apk", "var/lib/connman", "var/lib/dbus", "var/lib/dhcpcd",
               "var/lib/misc", "var/lib/sudo", "var/lib/udhcpd")
IMAGES = "var/lib/rancher/k3s/agent/containerd"  # container images and snapshots
K3OS_RANCHER_UID = 1000  # rancher/k3os libexec/k3os/bootstrap: adduser -u 1000 rancher
NODE_PASSWORD = "etc/rancher/node/password"
HOSTNAME = "var/lib/osbuilder/hostname"  # osbuilder's persisted name (appliers/hostname)
SSH_DIR = "var/lib/osbuilder/ssh/etc/ssh"  # sshd_config.d/osbuilder.conf's HostKey paths
RECORD = "var/lib/osbuilder/migrated-from-k3os.json"
BLOCK = 4096
DATA_FS_SLACK_MIB = 96  # journal, group metadata, the first boot's own writes

Ids = Callable[[int, int], tuple[int, int]]


def _same(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


@dataclass
class Tally:
    files: int = 0  # every inode: files, folders, links, devices
    bytes: int = 0  # data, rounded up to whole blocks (sparse files: what they hold)
    skipped: list[str] = field(default_factory=list)  # sockets (recreated by their owners)

    def data_fs_mib(self, minimum_mib: int) -> int:
        """Size of the data file system to make: the data, 15 % for ext4's own blocks,
        inodes at one per 8 KiB (mkfs -i 8192) with a fifth to spare, the slack."""
        need = max(self.bytes * 115 // 100, self.files * 8192 * 6 // 5)
        return max(minimum_mib, -(-need // MIB) + DATA_FS_SLACK_MIB)


def selection(data: Path, skip_images: bool) -> list[tuple[str, str, frozenset[str]]]:
    """(k3OS path, osbuilder path, paths left out) of each kept folder that exists."""
    out = []
    left = set(LEFT_BEHIND) | ({IMAGES} if skip_images else set())
    for src, dest in KEEP:
        if kind(data, src) == "dir":  # no symlink on the way (k3os/data/var -> /) followed
            out.append((src, dest, frozenset(p.removeprefix(src + "/") for p in left
                                              if p.startswith(src + "/"))))
    return out


def walk(src: Path, excluded: frozenset[str]) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under src, parents first; nothing followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(src / rel if rel else src) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            sub = f"{rel}/{e.name}" if rel else e.name
            if sub in excluded:
                continue
            st = e.stat(follow_symlinks=False)
            yield sub, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(sub)


def measure(data: Path, skip_images: bool) -> Tally:
    t = Tally()
    for src, _dest, excluded in selection(data, skip_images):
        for _rel, st in walk(data / src, excluded):
            t.files += 1
            if stat.S_ISREG(st.st_mode):
                t.bytes += min(-(-st.st_size // BLOCK), -(-st.st_blocks * 512 // BLOCK)) * BLOCK
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
                t.bytes += BLOCK
    return t


def _copy_data(src: Path, dest: Path, size: int) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fout = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            pos = 0
            while pos < size:  # data extents only: a sparse file stays sparse
                try:
                    start = os.lseek(fin, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break  # only a hole left
                    raise
                end = min(os.lseek(fin, start, os.SEEK_HOLE), size)
                os.lseek(fout, start, os.SEEK_SET)
                at = start
                while at < end:
                    n = os.sendfile(fout, fin, at, min(end - at, 1 << 30))
                    if n == 0:
                        raise OsbError(f"{src}: shorter than its size")
                    at += n
                pos = end
            os.ftruncate(fout, size)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _meta(src: Path, dest: Path, st: os.stat_result, ids: Ids) -> None:
    link = stat.S_ISLNK(st.st_mode)
    if os.geteuid() == 0:
        os.lchown(dest, *ids(st.st_uid, st.st_gid))
    if not link:
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        os.setxattr(dest, name, os.getxattr(src, name, follow_symlinks=False),
                    follow_symlinks=False)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: Path, dest: Path, excluded: frozenset[str], ids: Ids, tally: Tally) -> None:
    """src's content into dest (which exists); see the module's doc for what is kept."""
    links: dict[tuple[int, int], Path] = {}
    folders: list[tuple[Path, Path, os.stat_result]] = []
    for rel, st in walk(src, excluded):
        s, d = src / rel, dest / rel
        mode = st.st_mode
        try:
            if stat.S_ISDIR(mode):
                d.mkdir(mode=0o700)
                folders.append((s, d, st))
                tally.files += 1
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d)
                continue
            if stat.S_ISREG(mode):
                _copy_data(s, d, st.st_size)
                tally.bytes += st.st_size
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(d, 0o600)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            else:
                tally.skipped.append(rel)  # a socket: its daemon makes it again
                continue
            _meta(s, d, st, ids)
            tally.files += 1
            if st.st_nlink > 1:
                links[key] = d
        except OSError as exc:
            raise OsbError(f"copying {s}: {exc.strerror or exc}") from None
    for s, d, st in reversed(folders):  # children first: their writes change the times
        _meta(s, d, st, ids)


def populate(state: K3osState, dest: Path, rancher: tuple[int, int], skip_images: bool,
             when: str) -> Tally:
    """Fill dest (the new data file system's root) from k3OS's data; returns the tally."""
    data, tally = state.data, Tally()

    def home_ids(uid: int, gid: int) -> tuple[int, int]:
        return (rancher[0] if uid == K3OS_RANCHER_UID else uid,
                rancher[1] if gid == K3OS_RANCHER_UID else gid)

    for src, to, excluded in selection(data, skip_images):
        target = dest / to
        target.mkdir(parents=True, exist_ok=True)
        _meta(data / src, target, (data / src).lstat(), _same)
        if src == "home":  # each home's owner: only rancher's ids change (uid 1000 -> image's)
            for rel, st in walk(data / src, excluded):
                if "/" in rel or not stat.S_ISDIR(st.st_mode):
                    continue
                ids = home_ids if rel == "rancher" else _same
                (target / rel).mkdir(mode=0o700)
                copy_tree(data / src / rel, target / rel, frozenset(), ids, tally)
                _meta(data / src / rel, target / rel, st, ids)
            continue
        copy_tree(data / src, target, excluded, _same, tally)
    write_atomic(dest / NODE_PASSWORD, state.node_password, 0o600)
    (dest / "etc").chmod(0o755)
    if state.hostname:
        write_atomic(dest / HOSTNAME, state.hostname + "\n", 0o644)
    for name, blob in sorted(state.host_keys.items()):
        write_atomic(dest / SSH_DIR / name, blob, 0o644 if name.endswith(".pub") else 0o600)
    record = {"from": "k3OS", "k3os_version": state.version, "role": state.role,
              "datastore": state.datastore, "migrated_at": when,
              "kept": [f"{s} -> {d}" for s, d, _ in selection(data, skip_images)],
              "left_behind": sorted(set(LEFT_BEHIND) | ({IMAGES} if skip_images else set())),
              "files": tally.files, "bytes": tally.bytes, "sockets_skipped": tally.skipped}
    write_atomic(dest / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n", 0o644)
    return tally
