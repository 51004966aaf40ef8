"""Filesystem helpers of the appliers, plus the node-root and HTTP helpers that the other
test_apply_* modules import."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import ensure_dir, lookup_ids, remove, symlink, write_atomic
from osbuilder.shared.nodeconfig.accounts import IMAGE_GROUPS, IMAGE_USERS

IS_ROOT = os.geteuid() == 0


def make_root(path: Path) -> Path:
    """A node root with the accounts the image's sysusers would have made."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    ids = {"root": 0, "osb": 1000, "rancher": 1001}
    users = ["root", "osb", "rancher"] + [u for u in IMAGE_USERS if u not in ids]
    (etc / "passwd").write_text("".join(
        f"{u}:x:{ids.get(u, 100 + i)}:{ids.get(u, 100 + i)}:{u}:/home/{u}:/bin/bash\n"
        for i, u in enumerate(users)))
    fixed = {"root": 0, "sudo": 27, "shadow": 42, "osb": 1000, "rancher": 1001}
    groups = list(fixed) + [g for g in IMAGE_GROUPS if g not in fixed]
    (etc / "group").write_text("".join(
        f"{g}:x:{fixed.get(g, 200 + i)}:{'osb,rancher' if g == 'sudo' else ''}\n"
        for i, g in enumerate(groups)))
    (etc / "shadow").write_text("root:*:19700:0:99999:7:::\nosb:!:19700:0:99999:7:::\n"
                                "daemon:*:19700:0:99999:7:::\n")
    (etc / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    # cloud-init, shipped off as on the boards with package set data-sources
    (path / "usr/bin").mkdir(parents=True)
    (path / "usr/bin/cloud-init").write_text("")
    (etc / "cloud").mkdir()
    (etc / "cloud/cloud-init.disabled").write_text("")
    return path


def mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


@contextmanager
def serve(routes: dict[str, tuple[int, bytes]]) -> Iterator[tuple[str, list[str]]]:
    """HTTP on 127.0.0.1: path → (status, body); yields the base URL and the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = routes.get(self.path, (404, b"Not Found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # A proxy set in the environment must not swallow requests meant for this server.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1")
        mp.setenv("no_proxy", "127.0.0.1")
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", asked
        finally:
            server.shutdown()
            server.server_close()


def test_write_atomic_changes_only_when_needed(tmp_path: Path) -> None:
    f = tmp_path / "a/b/file"
    assert write_atomic(f, "one\n", 0o640)
    assert f.read_text() == "one\n" and mode(f) == 0o640
    before = f.stat().st_mtime_ns, f.stat().st_ino
    assert not write_atomic(f, b"one\n", 0o640)
    assert (f.stat().st_mtime_ns, f.stat().st_ino) == before
    assert write_atomic(f, "one\n", 0o600)  # mode alone is a change
    assert mode(f) == 0o600
    assert write_atomic(f, "two\n", 0o600)
    assert f.read_text() == "two\n"
    assert sorted(p.name for p in f.parent.iterdir()) == ["file"]  # no temp file left


def test_write_atomic_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    assert write_atomic(link, "new")
    assert victim.read_text() == "keep" and not link.is_symlink()


def test_write_atomic_temp_name_taken_by_a_planted_symlink(tmp_path: Path) -> None:
    """The temp file is made with O_EXCL: a symlink someone planted at its name (in a
    directory the user owns, such as ~/.ssh) is neither followed nor written through."""
    import os

    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "authorized_keys"
    (tmp_path / f".authorized_keys.{os.getpid()}-0.tmp").symlink_to(victim)
    assert write_atomic(target, "key\n", 0o600)
    assert victim.read_text() == "keep" and target.read_text() == "key\n"
    assert mode(target) == 0o600 and not target.is_symlink()


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root (the agent runs as root)")
def test_write_atomic_sets_and_checks_owner(tmp_path: Path) -> None:
    f = tmp_path / "f"
    assert write_atomic(f, "x", 0o600, 1000, 42)
    assert (f.stat().st_uid, f.stat().st_gid) == (1000, 42)
    assert not write_atomic(f, "x", 0o600, 1000, 42)
    assert write_atomic(f, "x", 0o600, 0, 0)
    assert f.stat().st_uid == 0


def test_remove(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert remove(f) and not f.exists()
    assert not remove(f)


def test_symlink_and_ensure_dir_are_idempotent(tmp_path: Path) -> None:
    link = tmp_path / "wants/x.service"
    assert symlink(link, "/usr/lib/systemd/system/x.service")
    assert not symlink(link, "/usr/lib/systemd/system/x.service")
    assert symlink(link, "/usr/lib/systemd/system/y.service")
    assert os.readlink(link) == "/usr/lib/systemd/system/y.service"
    d = tmp_path / "home/osb/.ssh"
    (tmp_path / "home/osb").mkdir(parents=True)
    d.symlink_to(tmp_path)  # planted by a user: must not be followed
    assert ensure_dir(d, 0o700)
    assert d.is_dir() and not d.is_symlink() and mode(d) == 0o700
    assert not ensure_dir(d, 0o700)


def test_lookup_ids(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert lookup_ids(root, "osb") == (1000, 1000)
    assert lookup_ids(root, "osb:sudo") == (1000, 27)
    assert lookup_ids(root, "root:shadow") == (0, 42)
    assert lookup_ids(root, "0:42") == (0, 42)
    assert lookup_ids(root, "1000") == (1000, 1000)
    assert lookup_ids(root, "4321") == (4321, 4321)
    with pytest.raises(OsbError, match="owner 'alice:osb': no user 'alice'"):
        lookup_ids(root, "alice:osb")
    with pytest.raises(OsbError, match="owner 'osb:wheel': no group 'wheel'"):
        lookup_ids(root, "osb:wheel")
