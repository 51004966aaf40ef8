"""Hostname: configured, or generated once from the first MAC (else machine-id) and kept."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.nodeconfig.appliers import hostname
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import make_root


def facts(*macs: str) -> Facts:
    return Facts(macs=macs, wireless=(), serial=None, hostname=None)


def test_configured_hostname(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    hostname.apply(parse({"hostname": "edge-1"}), facts("52:54:00:a1:b2:c3"), root)
    assert (root / "etc/hostname").read_text() == "edge-1\n"
    hosts = (root / "etc/hosts").read_text().splitlines()
    assert "127.0.0.1 localhost" in hosts and "127.0.1.1 edge-1" in hosts
    assert any(line.startswith("::1 localhost") for line in hosts)
    assert not (root / hostname.STATE).exists()  # nothing generated, nothing kept


def test_generated_from_first_mac_and_kept_when_macs_change(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    cfg = parse({})
    hostname.apply(cfg, facts("52:54:00:A1:B2:C3", "52:54:00:00:00:01"), root)
    assert (root / "etc/hostname").read_text() == "osb-a1b2c3\n"
    assert (root / hostname.STATE).read_text() == "osb-a1b2c3\n"
    (root / "etc/hostname").unlink()  # /etc is a tmpfs: gone at the next boot
    hostname.apply(cfg, facts("52:54:00:dd:ee:ff"), root)  # NIC swapped
    assert (root / "etc/hostname").read_text() == "osb-a1b2c3\n"
    assert hostname.resolve_hostname(cfg, facts("52:54:00:dd:ee:ff"), root) == "osb-a1b2c3"


def test_without_mac_uses_machine_id(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert hostname.resolve_hostname(parse({}), facts(), root) == "osb-012345"


def test_config_wins_over_the_kept_name(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "var/lib/osbuilder").mkdir(parents=True)
    (root / hostname.STATE).write_text("osb-a1b2c3\n")
    assert hostname.resolve_hostname(parse({"hostname": "n2"}), facts(), root) == "n2"
