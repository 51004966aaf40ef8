"""The copy of a k3OS node's data onto osbuilder's data partition, folder to folder: what
goes where, what stays behind, and that the copy is exact (symlinks not followed, hard
links, sparse files, extended attributes, special files, owners and modes)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from osbuilder.node.install.k3os_state import read_state
from osbuilder.node.install.migrate_copy import IMAGES, measure, populate, selection
from osbuilder.shared.errors import OsbError
from tests.helpers.k3os_disk import K3osNode, state_tree

DATA = "k3os/data"
RANCHER = (1001, 1001)  # the osbuilder image's rancher (sysusers: u rancher 1001)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return state_tree(tmp_path / "state", K3osNode())


def test_where_each_thing_goes(tree: Path, tmp_path: Path) -> None:
    node_pw = (tree / DATA / "var/lib/rancher/k3os/node/password").read_bytes()
    dest = tmp_path / "data"
    dest.mkdir()
    tally = populate(read_state(tree), dest, RANCHER, False, "2025-01-01T00:00:00Z")
    k3s = dest / "var/lib/rancher/k3s"
    for rel in ("server/db/state.db", "server/token", "server/tls/service.key",
                "storage/pvc-1234_default_data/db.bin", f"{IMAGES.split('k3s/')[1]}"):
        src = tree / DATA / "var/lib/rancher/k3s" / rel
        if src.is_dir():
            assert sorted(os.listdir(k3s / rel)) == sorted(os.listdir(src))
        else:
            assert (k3s / rel).read_bytes() == src.read_bytes(), rel
    pw = dest / "etc/rancher/node/password"
    assert pw.read_bytes() == node_pw and stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert (dest / "var/lib/osbuilder/hostname").read_text() == "k3os-21811\n"
    key = dest / "var/lib/osbuilder/ssh/etc/ssh/ssh_host_ed25519_key"
    assert key.read_bytes() == (tree / DATA / "var/lib/rancher/k3os/ssh" / key.name).read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # k3OS's local config stays where the agent reads it
    assert (dest / "var/lib/rancher/k3os/config.yaml").read_text().startswith("k3os:")
    assert (dest / "var/log/k3os/k3s-service.log").read_text() == "k3s log line\n"
    assert (dest / "opt").is_dir() and (dest / "home/rancher/notes.txt").is_file()
    # Alpine's dbus machine-id would shadow Debian's: left behind
    assert not (dest / "var/lib/dbus").exists()
    record = json.loads((dest / "var/lib/osbuilder/migrated-from-k3os.json").read_text())
    assert record["role"] == "server" and record["k3os_version"] == "v0.22.2-k3s2r0"
    assert "var/lib/dbus" in record["left_behind"] and record["files"] == tally.files
    text = (dest / "var/lib/osbuilder/migrated-from-k3os.json").read_text()
    assert node_pw.decode() not in text and "K10" not in text  # no secrets in the record


def test_symlinks_hard_links_sparse_files_xattrs_and_fifos_copied_exactly(
        tree: Path, tmp_path: Path) -> None:
    lib = tree / DATA / "var/lib/app"
    lib.mkdir(parents=True)
    outside = tmp_path / "outside-secret"
    outside.write_text("must not be copied\n")
    (lib / "escape").symlink_to(outside)  # copied as a link, never followed
    (lib / "a").write_text("linked\n")
    os.link(lib / "a", lib / "b")
    with (lib / "sparse").open("wb") as f:
        f.seek(64 << 20)
        f.write(b"end")
    os.setxattr(lib / "a", "user.osb-test", b"kept")
    os.mkfifo(lib / "fifo", 0o640)
    (lib / "mode").write_text("x")
    (lib / "mode").chmod(0o4750)
    os.utime(lib / "a", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    dest = tmp_path / "data"
    dest.mkdir()
    populate(read_state(tree), dest, RANCHER, False, "now")
    app = dest / "var/lib/app"
    assert os.readlink(app / "escape") == str(outside)
    assert (app / "a").stat().st_ino == (app / "b").stat().st_ino
    assert (app / "sparse").stat().st_size == (64 << 20) + 3
    assert (app / "sparse").stat().st_blocks * 512 < 1 << 20  # still sparse
    assert (app / "sparse").read_bytes()[-3:] == b"end"
    assert os.getxattr(app / "a", "user.osb-test") == b"kept"
    assert stat.S_ISFIFO((app / "fifo").lstat().st_mode)
    assert stat.S_IMODE((app / "fifo").lstat().st_mode) == 0o640
    assert stat.S_IMODE((app / "mode").stat().st_mode) == 0o4750
    assert (app / "a").stat().st_mtime_ns == 1_600_000_000_000_000_000


def test_home_of_rancher_gets_the_images_rancher(tree: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("owners can only be set as root: run the unit tests as root to check them")
    other = tree / DATA / "var/lib/app/owned-by-1000"
    other.parent.mkdir(parents=True)
    other.write_text("a container's file\n")
    os.chown(other, 1000, 1000)
    dest = tmp_path / "data"
    dest.mkdir()
    populate(read_state(tree), dest, RANCHER, False, "now")
    home = dest / "home/rancher"
    for p in (home, home / ".ssh", home / ".ssh/authorized_keys", home / "notes.txt"):
        assert (p.stat().st_uid, p.stat().st_gid) == RANCHER, p
    # uid 1000 elsewhere is a container's or osb's, not k3OS's rancher: unchanged
    assert (dest / "var/lib/app/owned-by-1000").stat().st_uid == 1000
    assert (dest / "etc/rancher/node/password").stat().st_uid == 0


def test_skip_images_leaves_containerd_behind_and_measure_agrees(tree: Path,
                                                                 tmp_path: Path) -> None:
    full, lean = measure(tree / DATA, False), measure(tree / DATA, True)
    assert full.bytes - lean.bytes >= 64 * 1024  # the 64 KiB blob
    dest = tmp_path / "data"
    dest.mkdir()
    tally = populate(read_state(tree), dest, RANCHER, True, "now")
    assert not (dest / IMAGES).exists()
    assert (dest / "var/lib/rancher/k3s/agent/images").is_dir()  # air-gap images stay
    assert tally.files + 6 >= lean.files  # measured what was copied (+ derived files)
    assert lean.data_fs_mib(128) == 128
    big = measure(tree / DATA, False)
    big.bytes, big.files = 2 << 30, 10
    assert big.data_fs_mib(128) == (2 << 30) * 115 // 100 // (1 << 20) + 1 + 96


def test_a_copy_error_names_the_file(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "var/lib").mkdir(parents=True)
    (dest / "var/lib/rancher").write_text("in the way")
    with pytest.raises(OsbError, match=r"^copying /.*/state/k3os/data/var/lib/rancher: File "
                                       "exists$"):
        populate(read_state(tree), dest, RANCHER, False, "now")


def test_a_symlinked_var_is_not_followed(tree: Path, tmp_path: Path) -> None:
    """k3os/data/var pointing at / (the live system's own files) is not copied from."""
    var = tree / DATA / "var"
    kept = tmp_path / "k3os-var"
    var.rename(kept)
    var.symlink_to("/")
    assert selection(tree / DATA, False) == [("home", "home", frozenset()),
                                             ("opt", "opt", frozenset())]
    assert measure(tree / DATA, False).bytes < 1 << 20
