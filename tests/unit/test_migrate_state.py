"""What `migrate-k3os` reads from K3OS_STATE, and when it refuses to go on: k3s state it
cannot read, hostile files (symlinks out, FIFOs, oversized), a config osbuilder cannot run.
Trees laid out as k3OS keeps its state (tests/helpers/k3os_disk.py cites where)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from osbuilder.node.install.k3os_state import Unreadable, read_file, read_state
from tests.helpers.k3os_disk import K3osNode, state_tree

K3S = "k3os/data/var/lib/rancher/k3s"
K3OS = "k3os/data/var/lib/rancher/k3os"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_tree(tmp_path_factory.mktemp("k3os") / "state", K3osNode())


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def refused(tree: Path) -> str:
    with pytest.raises(Unreadable) as exc:
        read_state(tree)
    return str(exc.value)


def test_a_k3os_server_node(tree: Path) -> None:
    node = K3osNode()
    s = read_state(tree)
    assert (s.role, s.datastore, s.version) == ("server", "sqlite", "v0.22.2-k3s2r0")
    assert s.hostname == node.hostname
    assert sorted(s.host_keys) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub",
                                   "ssh_host_rsa_key", "ssh_host_rsa_key.pub"]
    assert s.node_password == (tree / K3OS / "node/password").read_bytes()
    # the three k3OS sources together, in k3OS's order: system, local, config.d
    assert s.config.password == "rancher-e2e"
    assert dict(s.config.k3s.labels) == {"region": "edge-1", "rack": "r7"}
    assert list(s.config.k3s.taints) == ["edge=true:NoSchedule"]
    assert "node_password" not in repr(s) and s.node_password.decode() not in repr(s)


def test_an_agent_node_needs_its_server_url(tree: Path) -> None:
    shutil.rmtree(tree / K3S / "server")
    assert "holds agent state only, but the k3OS config names no server_url" in refused(tree)
    (tree / K3OS / "config.d/20-agent.yaml").write_text(
        "k3os:\n  server_url: https://10.0.0.1:6443\n  token: K10abc::server:def\n")
    s = read_state(tree)
    assert (s.role, s.datastore) == ("agent", "none")


def test_an_etcd_server(tree: Path) -> None:
    (tree / K3S / "server/db/state.db").unlink()
    assert "neither state.db (SQLite) nor etcd/member" in refused(tree)
    (tree / K3S / "server/db/etcd/member/snap").mkdir(parents=True)
    assert read_state(tree).datastore == "etcd"


@pytest.mark.parametrize(("damage", "said"), [
    (lambda t: shutil.rmtree(t / K3S), "k3s never ran on this node"),
    (lambda t: (t / K3S / "server/token").unlink(), "server/token: missing or empty"),
    (lambda t: (t / K3S / "server/tls/client-ca.crt").unlink(),
     "server/tls/client-ca.crt: missing or empty"),
    (lambda t: (t / K3S / "server/db/state.db").write_bytes(b"not sqlite at all"),
     "state.db: not an SQLite database"),
    (lambda t: (t / K3OS / "node/password").write_bytes(b""), "node/password: missing or "
     "empty (k3s's node password: without it the cluster refuses this node's name)"),
    (lambda t: (t / K3OS / "hostname").unlink(), "hostname: missing, and the config sets no "
     "hostname"),
    (lambda t: (t / K3OS / "hostname").write_text("not a host name!\n"),
     "'not a host name!' is not a host name"),
    (lambda t: shutil.rmtree(t / "k3os/system"), "/k3os/system (k3OS's system files): missing"),
])
def test_unreadable_k3s_state_is_refused(tree: Path, damage: object, said: str) -> None:
    damage(tree)  # type: ignore[operator]
    assert said in refused(tree)


def test_symlinks_are_never_followed(tree: Path, tmp_path: Path) -> None:
    """A node password or a TLS folder pointing out of K3OS_STATE (at the live system's
    own files, say) is refused, not read."""
    secret = tmp_path / "live-shadow"
    secret.write_text("root:$6$live-system-secret\n")
    pw = tree / K3OS / "node/password"
    pw.unlink()
    pw.symlink_to(secret)
    assert "node/password: a symlink or a file where a folder should be (never followed)" \
        in refused(tree)
    pw.unlink()
    pw.write_text("abc\n")
    tls = tree / K3S / "server/tls"
    shutil.rmtree(tls)
    tls.symlink_to(tmp_path)
    assert "server/tls/server-ca.crt: a symlink or a file where a folder should be" \
        in refused(tree)


def test_a_fifo_or_an_oversized_file_is_refused_without_blocking(tree: Path) -> None:
    cfg = tree / "k3os/system/config.yaml"
    cfg.unlink()
    os.mkfifo(cfg)  # opening a FIFO for reading would wait for a writer forever
    assert "/k3os/system/config.yaml: not a regular file" in refused(tree)
    cfg.unlink()
    cfg.write_text("k3os: {}\n")
    (tree / K3S / "server/token").write_bytes(b"K10" + b"a" * (70 << 10))
    assert "server/token: 71683 bytes, more than the 65536 a real one has" in refused(tree)
    with pytest.raises(Unreadable, match=r"not a plain path"):
        read_file(tree, "k3os/../k3os/system/config.yaml", 100)


def test_a_config_osbuilder_cannot_run_is_refused_naming_the_key(tree: Path) -> None:
    (tree / K3OS / "config.d/30-bad.yaml").write_text(
        "k3os:\n  k3s_args:\n  - --no-such-k3s-flag\n")
    msg = refused(tree)
    assert msg.startswith("k3OS's config would not work on osbuilder, nothing migrated:")
    assert "k3s_args" in msg and "--no-such-k3s-flag" in msg
