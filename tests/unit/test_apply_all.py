"""All appliers together: the order, `validate` before any write, and idempotence (a
second boot-time run leaves every file's bytes, mode and mtime as they were)."""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers import APPLIERS, apply_all, check_all, ssh_keys
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig, parse
from tests.unit.test_apply_fs import make_root
from tests.unit.test_apply_users import CRYPT

FACTS = Facts(macs=("52:54:00:a1:b2:c3",), wireless=("wlan0",), serial=None, hostname=None)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILiteral admin@desk"

Snapshot = dict[str, tuple[int, int, bytes | str | None]]


def full_config(**block: Any) -> NodeConfig:
    return parse({
        "ssh_authorized_keys": [KEY, "github:alice"],
        "write_files": [{"path": "/etc/motd", "content": base64.b64encode(
            gzip.compress(b"hello\n")).decode(), "encoding": "gz+b64", "owner": "osb:osb",
            "permissions": "0600"}],
        "k3os": {"password": CRYPT, "modules": ["kvm"], "sysctl": {"vm.swappiness": 10},
                 "ntp_servers": ["pool.ntp.org"], "dns_nameservers": ["1.1.1.1"],
                 "network": {"eth0": {"addresses": ["10.0.0.5/24"], "gateway": "10.0.0.1"}},
                 "wifi": [{"name": "home", "passphrase": "password1"}],
                 "labels": {"a": "b"}, "k3s_args": ["--node-label", "c=d"],
                 "environment": {"HTTP_PROXY": "http://p:3128"},
                 "registries": {"mirrors": {"docker.io": {"endpoint": ["https://m"]}}},
                 "manifests": [{"name": "x.yaml", "content": "kind: List\n"}], **block},
    })


def snapshot(root: Path) -> Snapshot:
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            data: bytes | str | None = None
            if p.is_symlink():
                data = os.readlink(p)
            elif p.is_file():
                data = p.read_bytes()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, data)
    return out


def test_order() -> None:
    names = [a.name for a in APPLIERS]
    assert names == ["hostname", "users", "ssh_keys", "kernel", "timesync", "dns", "network",
                     "wifi", "environment", "data_sources", "k3s", "write_files"]


@pytest.mark.parametrize("role", ["server", "agent"])
def test_every_applier_is_idempotent(tmp_path: Path, role: str) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/osbuilder").mkdir(parents=True)
    (root / ssh_keys.CACHE).write_text(json.dumps({"github:alice": ["ssh-rsa AAAAB3Nz a"]}))
    cfg = full_config(**({"server_url": "https://s:6443", "token": "t"} if role == "agent"
                         else {}))
    apply_all(cfg, FACTS, root)
    first = snapshot(root)
    written = {"etc/hostname", "etc/hosts", "etc/shadow", "home/osb/.ssh/authorized_keys",
               "etc/modules-load.d/osbuilder.conf", "etc/sysctl.d/90-osbuilder.conf",
               "etc/systemd/network/10-osbuilder-eth0.network",
               "etc/wpa_supplicant/wpa_supplicant-wlan0.conf", "etc/rancher/k3s/config.yaml",
               "etc/default/k3s", "etc/rancher/k3s/registries.yaml", "etc/motd"}
    assert written <= first.keys()
    assert ("var/lib/rancher/k3s/server/manifests/x.yaml" in first) == (role == "server")
    for applier in (a.apply for a in APPLIERS):
        applier(cfg, FACTS, root)
    assert snapshot(root) == first


def validate(cfg: object, root: Path) -> None:
    """Every applier's check against the root's accounts; the first problem raised."""
    assert isinstance(cfg, NodeConfig)
    problems = check_all(cfg, Accounts.of_root(root))
    if problems:
        raise problems[0]


def test_validate_raises_before_anything_is_written(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    before = snapshot(root)
    bad = full_config(k3s_args=["--node-label=x=y", "oops"])
    with pytest.raises(OsbError, match=r"k3os\.k3s_args\[1\]"):
        apply_all(bad, FACTS, root)
    assert snapshot(root) == before
    with pytest.raises(OsbError, match=r"write_files\[0\]\.owner"):
        validate(parse({"write_files": [{"path": "/x", "owner": "alice"}]}), root)
    validate(full_config(), root)
