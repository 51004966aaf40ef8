"""authorized_keys of `osb`: literal keys plus cached remote ones, and the fetch that fills
the cache. The HTTP server on 127.0.0.1 stands in for github.com and gitlab.com (TEST
DOUBLE: the machine running the tests has no internet)."""

from __future__ import annotations

import json
from pathlib import Path

from osbuilder.shared.nodeconfig.appliers import ssh_keys
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import IS_ROOT, make_root, mode, serve

FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@laptop"
ALICE2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQAlice2"
BOB = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYBob"
LITERAL = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILiteral admin@desk"


def keys_file(root: Path) -> list[str]:
    text = (root / "home/osb/.ssh/authorized_keys").read_text()
    return [line for line in text.splitlines() if not line.startswith("#")]


def cache(root: Path) -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((root / ssh_keys.CACHE).read_text())
    return data


def test_literal_and_cached_keys_merge_in_config_order(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/osbuilder").mkdir(parents=True)
    (root / ssh_keys.CACHE).write_text(json.dumps(
        {"github:alice": [ALICE, LITERAL], "github:gone": [BOB]}))
    cfg = parse({"ssh_authorized_keys": ["github:alice", LITERAL + "\n", "gitlab:nobody"]})
    ssh_keys.apply(cfg, FACTS, root)
    assert keys_file(root) == [ALICE, LITERAL]  # each key once; uncached entry adds none
    ssh = root / "home/osb/.ssh"
    assert mode(ssh) == 0o700 and mode(ssh / "authorized_keys") == 0o600
    if IS_ROOT:
        assert (ssh / "authorized_keys").stat().st_uid == 1000
        assert (ssh.stat().st_uid, ssh.stat().st_gid) == (1000, 1000)


def test_github_and_gitlab_keys_are_fetched_into_the_cache(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    routes = {"/alice.keys": (200, f"{ALICE}\n{ALICE2}\n".encode()),
              "/bob.keys": (200, f"{BOB}\n".encode())}
    cfg = parse({"ssh_authorized_keys": ["github:alice", "gitlab:bob", LITERAL]})
    with serve(routes) as (url, asked):
        warnings = ssh_keys.fetch_remote_keys(cfg, root, {"github": url, "gitlab": url})
    assert warnings == []
    assert sorted(asked) == ["/alice.keys", "/bob.keys"]
    assert cache(root) == {"github:alice": [ALICE, ALICE2], "gitlab:bob": [BOB]}
    ssh_keys.apply(cfg, FACTS, root)
    assert keys_file(root) == [ALICE, ALICE2, BOB, LITERAL]


def test_failed_fetch_keeps_cached_keys_and_warns(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/osbuilder").mkdir(parents=True)
    (root / ssh_keys.CACHE).write_text(json.dumps({"github:alice": [ALICE]}))
    cfg = parse({"ssh_authorized_keys": ["github:alice", "https://127.0.0.1:1/keys"]})
    with serve({}) as (url, _):  # every path is a 404
        warnings = ssh_keys.fetch_remote_keys(cfg, root, {"github": url}, timeout=2)
    assert len(warnings) == 2
    assert warnings[0].startswith("ssh_authorized_keys[0] (github:alice): fetching")
    assert "404" in warnings[0] and "keeping cached keys" in warnings[0]
    assert warnings[1].startswith("ssh_authorized_keys[1] (https://127.0.0.1:1/keys)")
    assert cache(root) == {"github:alice": [ALICE]}
    ssh_keys.apply(cfg, FACTS, root)
    assert keys_file(root) == [ALICE]


def test_error_pages_plain_http_and_odd_names_add_no_keys(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    routes = {"/carol.keys": (200, b"<html><body>Sign in</body></html>\n")}
    cfg = parse({"ssh_authorized_keys": ["github:carol", "http://example.test/k",
                                         "github:../etc"]})
    with serve(routes) as (url, asked):
        warnings = ssh_keys.fetch_remote_keys(cfg, root, {"github": url})
    assert asked == ["/carol.keys"]
    assert "lists no SSH keys" in warnings[0]
    assert "only fetched over https" in warnings[1]
    assert "not a valid github user name" in warnings[2]
    ssh_keys.apply(cfg, FACTS, root)
    assert keys_file(root) == []


def test_entries_removed_from_config_leave_the_cache(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/osbuilder").mkdir(parents=True)
    (root / ssh_keys.CACHE).write_text(json.dumps({"github:old": [BOB]}))
    assert ssh_keys.fetch_remote_keys(parse({"ssh_authorized_keys": [LITERAL]}), root) == []
    assert cache(root) == {}
