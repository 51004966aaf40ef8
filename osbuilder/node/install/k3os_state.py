"""What a k3OS node keeps on K3OS_STATE, read from that file system (mounted read-only) and
checked before anything is written. Every file is hostile until read: no symlink is
followed on the way to it, it must be a regular file, and it has a size limit.

Where k3OS keeps it (rancher/k3os@8cdfdf2):
- /k3os/data is the running system's root (enterchroot), so /var is K3OS_STATE:/k3os/data/var;
- /k3os/system/config.yaml: the installer's config (install.sh do_copy, config_url);
- var/lib/rancher/k3os/config.yaml and config.d/*: local config (pkg/config/read.go);
- var/lib/rancher/k3os/hostname: the random `k3os-$RANDOM` name used when no hostname is
  configured (overlay/libexec/k3os/boot setup_hostname);
- var/lib/rancher/k3os/node = /etc/rancher/node, k3s's node password
  (overlay/libexec/k3os/mode-local setup_rancher_node);
- var/lib/rancher/k3os/ssh = /etc/ssh, with the host keys (mode-local setup_ssh);
- var/lib/rancher/k3s: k3s's data dir (server/db state.db or etcd, server/tls, server/token).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers.hostname import VALID as VALID_HOSTNAME
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.nodeconfig.loader import load
from osbuilder.shared.nodeconfig.model import NodeConfig
from osbuilder.shared.nodeconfig.source_text import Source, parse_source

SYSTEM = "k3os/system"
DATA = "k3os/data"
SYSTEM_CONFIG = f"{SYSTEM}/config.yaml"
K3OS_DIR = "var/lib/rancher/k3os"
K3S_DIR = "var/lib/rancher/k3s"
NODE_PASSWORD = f"{K3OS_DIR}/node/password"
HOSTNAME = f"{K3OS_DIR}/hostname"
SSH_DIR = f"{K3OS_DIR}/ssh"
HOST_KEYS = ("ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key")
SQLITE_MAGIC = b"SQLite format 3\0"
SMALL = 64 << 10  # token, password, hostname, a host key: far above any real one
TLS_REQUIRED = ("server-ca.crt", "client-ca.crt", "service.key")
MAX_CONFIG_D = 256  # files in var/lib/rancher/k3os/config.d


class Unreadable(OsbError):
    """k3OS's state is missing, damaged or not what k3OS writes: nothing is migrated."""


def _open(root: Path, rel: str) -> int | None:
    """An fd of root/rel opened without following any symlink on the way (a component
    that is one is refused), or None when it does not exist."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parts = [p for p in rel.split("/") if p]
    try:
        for i, name in enumerate(parts):
            if name in (".", ".."):
                raise Unreadable(f"{rel}: not a plain path")
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nfd = os.open(name, flags, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                return None
            except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file on the way
                raise Unreadable(f"/{rel}: {_why(exc)}") from None
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable(f"/{rel}: not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file(root: Path, rel: str, limit: int) -> bytes | None:
    """root/rel (see _open), a regular file of at most `limit` bytes; None if absent."""
    fd = _open(root, rel)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise Unreadable(f"/{rel}: {size} bytes, more than the {limit} a real one has")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise Unreadable(f"/{rel}: more than {limit} bytes")
        return data
    except OSError as exc:
        raise Unreadable(f"/{rel}: cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)


def head(root: Path, rel: str, length: int) -> bytes | None:
    """The first `length` bytes of root/rel (see _open); None if absent."""
    fd = _open(root, rel)
    if fd is None:
        return None
    try:
        return os.read(fd, length)
    except OSError as exc:
        raise Unreadable(f"/{rel}: cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    if exc.errno in (40, 20):  # ELOOP, ENOTDIR
        return "a symlink or a file where a folder should be (never followed)"
    return f"cannot read it: {exc.strerror}"


def kind(root: Path, rel: str) -> str | None:
    """'dir', 'file', 'symlink' or 'other' for root/rel (no symlink followed), None if absent."""
    at = root
    for name in [p for p in rel.split("/") if p]:
        try:
            st = (at / name).lstat()
        except FileNotFoundError:
            return None
        at = at / name
        if stat.S_ISLNK(st.st_mode):
            return "symlink"
        if not stat.S_ISDIR(st.st_mode):
            return "file" if stat.S_ISREG(st.st_mode) else "other"
    return "dir"


@dataclass(frozen=True)
class K3osState:
    root: Path  # the K3OS_STATE file system
    role: str  # server or agent
    datastore: str  # sqlite, etcd, external (--datastore-endpoint) or none (agents)
    config: NodeConfig  # what k3OS's config files say together, as osbuilder reads them
    system_config: bytes | None = field(repr=False)  # /k3os/system/config.yaml as it is
    node_password: bytes = field(repr=False)
    hostname: str | None  # k3OS's persisted name (used when no hostname is configured)
    host_keys: dict[str, bytes] = field(repr=False)  # file name -> bytes (and .pub)
    version: str | None  # k3OS's version (k3os/system/k3os/current)

    @property
    def data(self) -> Path:
        return self.root / DATA


def _need_dir(root: Path, rel: str, what: str) -> None:
    k = kind(root, rel)
    if k != "dir":
        raise Unreadable(f"/{rel} ({what}): " + ("missing" if k is None else f"a {k}, not a "
                                                  "folder (never followed)"))


def config_sources(root: Path) -> tuple[bytes | None, list[Source]]:
    """k3OS's config files in its order (system, local, config.d by name), parsed as the
    osbuilder agent parses them."""
    system = read_file(root, SYSTEM_CONFIG, MAX_SOURCE_BYTES)
    sources = [parse_source(system, "/k3os/system/config.yaml")] if system else []
    local = read_file(root, f"{DATA}/{K3OS_DIR}/config.yaml", MAX_SOURCE_BYTES)
    if local:
        sources.append(parse_source(local, f"/{K3OS_DIR}/config.yaml"))
    d = f"{DATA}/{K3OS_DIR}/config.d"
    if kind(root, d) == "dir":
        names = sorted(os.listdir(root / d))
        if len(names) > MAX_CONFIG_D:
            raise Unreadable(f"/{K3OS_DIR}/config.d: {len(names)} files, more than "
                             f"{MAX_CONFIG_D}")
        for name in names:  # k3OS reads every file there, whatever its name
            text = read_file(root, f"{d}/{name}", MAX_SOURCE_BYTES)
            if text is not None:
                sources.append(parse_source(text, f"/{K3OS_DIR}/config.d/{name}"))
    elif kind(root, d) is not None:
        raise Unreadable(f"/{K3OS_DIR}/config.d: not a folder")
    return system, sources


def _k3s_state(data: Path, cfg: NodeConfig) -> tuple[str, str]:
    """(role, datastore), or Unreadable naming what is missing."""
    _need_dir(data, K3S_DIR, "k3s's data: k3s never ran on this node, there is no cluster "
              "state to keep; install osbuilder instead")
    if kind(data, f"{K3S_DIR}/server") is None:
        _need_dir(data, f"{K3S_DIR}/agent", "k3s agent state")
        if not cfg.k3s.server_url:
            raise Unreadable(f"/{K3S_DIR} holds agent state only, but the k3OS config names "
                             "no server_url to rejoin")
        return "agent", "none"
    if not (read_file(data, f"{K3S_DIR}/server/token", SMALL) or b"").strip():
        raise Unreadable(f"/{K3S_DIR}/server/token: missing or empty (the cluster's token)")
    for name in TLS_REQUIRED:
        if not read_file(data, f"{K3S_DIR}/server/tls/{name}", 1 << 20):
            raise Unreadable(f"/{K3S_DIR}/server/tls/{name}: missing or empty")
    magic = head(data, f"{K3S_DIR}/server/db/state.db", len(SQLITE_MAGIC))
    if magic is not None:
        if magic != SQLITE_MAGIC:
            raise Unreadable(f"/{K3S_DIR}/server/db/state.db: not an SQLite database")
        return "server", "sqlite"
    if kind(data, f"{K3S_DIR}/server/db/etcd/member") == "dir":
        return "server", "etcd"
    if any(a.startswith("--datastore-endpoint") for a in cfg.k3s.args):
        return "server", "external"
    raise Unreadable(f"/{K3S_DIR}/server/db: neither state.db (SQLite) nor etcd/member, and no "
                     "--datastore-endpoint in k3s_args: the cluster's datastore is missing")


def read_state(root: Path) -> K3osState:
    """Everything the migration needs from K3OS_STATE mounted at root; Unreadable (or a
    config error) when something is missing, damaged or refused."""
    _need_dir(root, SYSTEM, "k3OS's system files")
    _need_dir(root, DATA, "k3OS's running root: /var, /home")
    data = root / DATA
    system, sources = config_sources(root)
    verdict = load(sources)
    if verdict.config is None:
        raise Unreadable("k3OS's config would not work on osbuilder, nothing migrated:\n"
                         + "\n".join(f"  at {p}" for p in verdict.problems))
    role, datastore = _k3s_state(data, verdict.config)
    password = read_file(data, NODE_PASSWORD, SMALL)
    if not (password or b"").strip():
        raise Unreadable(f"/{NODE_PASSWORD}: missing or empty (k3s's node password: without "
                         "it the cluster refuses this node's name)")
    assert password is not None
    name = (read_file(data, HOSTNAME, 256) or b"").decode(errors="replace").strip() or None
    if verdict.config.hostname is None and not (name and VALID_HOSTNAME.match(name)):
        raise Unreadable(f"/{HOSTNAME}: " + (f"{name!r} is not a host name" if name else
                         "missing") + ", and the config sets no hostname: the node's "
                         "name (its Node in the cluster) is unknown; set hostname: in "
                         "/k3os/system/config.yaml")
    keys = {}
    for key in HOST_KEYS:
        for f in (key, f"{key}.pub"):
            blob = read_file(data, f"{SSH_DIR}/{f}", SMALL)
            if blob:
                keys[f] = blob
    try:
        version = os.readlink(root / SYSTEM / "k3os/current")
    except OSError:
        version = None
    return K3osState(root=root, role=role, datastore=datastore, config=verdict.config,
                     system_config=system, node_password=password, hostname=name,
                     host_keys=keys, version=version)
