"""Config sources: merge order (maps merge, lists replace), cmdline, per-device entries."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.source_text import Source, cmdline, merge
from osbuilder.shared.nodeconfig.sources import (
    boot_partition,
    cloud_key_pair,
    cloud_user_data,
    merge_all,
)

FACTS = Facts(macs=("52:54:00:12:34:56",), wireless=(), serial="SN-42", hostname="osb-123456")


def test_maps_merge_lists_replace() -> None:
    base = {"k3os": {"labels": {"a": "1", "b": "2"}, "dns_nameservers": ["1.1.1.1", "8.8.8.8"]}}
    over = {"k3os": {"labels": {"b": "3"}, "dns_nameservers": ["9.9.9.9"]}}
    assert merge(base, over) == {"k3os": {"labels": {"a": "1", "b": "3"},
                                          "dns_nameservers": ["9.9.9.9"]}}
    assert base["k3os"]["labels"] == {"a": "1", "b": "2"}, "inputs are not modified"


def test_source_order_and_spellings() -> None:
    sources = [
        Source("image", {"k3os": {"password": "image", "labels": {"tier": "img"}}}),
        Source("cmdline", {"k3os": {"password": "cmdline"}}),
        Source("config.yaml", {"k3os": {"labels": {"site": "a"}}, "hostname": "h1"}),
        Source("config.d/10.yaml", {"k3os": {"password": "confd"}}),
        Source("empty", {}),
    ]
    merged, used = merge_all(sources, FACTS)
    assert merged == {"hostname": "h1", "k3os": {"password": "confd",
                                                 "labels": {"tier": "img", "site": "a"}}}
    assert used == ["image", "cmdline", "config.yaml", "config.d/10.yaml"]


def test_device_entries_match_mac_serial_hostname() -> None:
    nodes = [
        {"match": {"mac": "52:54:00:12:34:56"}, "hostname": "by-mac"},
        {"match": {"serial": "OTHER"}, "hostname": "wrong"},
        {"match": {"serial": "SN-42"}, "k3os": {"labels": {"rack": "7"}}},
        # hostname matches the machine's or the config's name, not one set by nodes:
        {"match": {"hostname": "osb-123456"}, "osbuilder": {"token": "t"}},
        {"match": {"hostname": "by-mac"}, "hostname": "chained"},
        {"match": {"mac": "52:54:00:12:34:56", "serial": "OTHER"}, "hostname": "both"},
    ]
    merged, used = merge_all([Source("config.yaml", {"nodes": nodes})], FACTS)
    assert merged["hostname"] == "by-mac"
    assert merged["k3os"] == {"labels": {"rack": "7"}, "token": "t"}
    assert used == ["config.yaml", "nodes[0]", "nodes[2]", "nodes[3]"]


def test_cmdline() -> None:
    src, control = cmdline(
        "root=PARTLABEL=OSB_ROOT_A ro osb.slot=a osb.mode=live k3os.password=pw "
        "osb.server_url=https://s:6443 osb.install.device=/dev/sda osb.install.force=true "
        "osb.dns_nameservers=1.1.1.1,8.8.8.8 osb.hostname=n1 config_url=http://c/cfg")
    assert control == {"slot": "a", "mode": "live", "config_url": "http://c/cfg"}
    assert src is not None and src.data == {"hostname": "n1", "k3os": {
        "password": "pw", "server_url": "https://s:6443",
        "install": {"device": "/dev/sda", "force": True},
        "dns_nameservers": ["1.1.1.1", "8.8.8.8"]}}


def test_boot_partition_order(tmp_path: Path) -> None:
    (tmp_path / "config.d").mkdir()
    (tmp_path / "config.yaml").write_text("hostname: a\n")
    (tmp_path / "config.d/20-b.yaml").write_text("hostname: c\n")
    (tmp_path / "config.d/10-a.yaml").write_text("osbuilder: {token: t}\n")
    (tmp_path / "config.d/notes.txt").write_text("ignored")
    names = [Path(s.name).name for s in boot_partition(tmp_path)]
    assert names == ["config.yaml", "10-a.yaml", "20-b.yaml"]
    assert boot_partition(tmp_path)[1].data == {"k3os": {"token": "t"}}


def test_cloud_user_data(tmp_path: Path) -> None:
    ud = tmp_path / "user-data.txt"
    assert cloud_user_data(ud) is None
    ud.write_text("hostname: from-ec2\nk3os: {token: t}\n")
    src = cloud_user_data(ud)
    assert src is not None and src.data == {"hostname": "from-ec2", "k3os": {"token": "t"}}
    ud.write_text("#cloud-config\npackages: [htop]\nosbuilder: {token: u}\n")
    src = cloud_user_data(ud)
    assert src is not None and src.data == {"k3os": {"token": "u"}}
    ud.write_text("#cloud-config\nhostname: c1\nruncmd: [ls]\nssh_authorized_keys: [k]\n"
                  "write_files: [{path: /x}]\n")
    src = cloud_user_data(ud)
    assert src is not None and src.data == {"hostname": "c1", "ssh_authorized_keys": ["k"]}
    ud.write_text("#!/bin/sh\necho hi\n")
    assert cloud_user_data(ud) is None


def test_cloud_key_pair(tmp_path: Path) -> None:
    f = tmp_path / "instance-data.json"
    assert cloud_key_pair(f) is None
    f.write_text('{"v1": {"public_ssh_keys": ["ssh-ed25519 AAAA ec2-key"], "region": "r"}}')
    src = cloud_key_pair(f)
    assert src is not None and src.data == {"ssh_authorized_keys": ["ssh-ed25519 AAAA ec2-key"]}
    f.write_text('{"v1": {"public_ssh_keys": []}}')
    assert cloud_key_pair(f) is None
    f.write_text("not json")
    assert cloud_key_pair(f) is None
