"""systemd-networkd files for configured interfaces, and Wi-Fi via wpa_supplicant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import network, wifi
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import mode

NO_WIFI = Facts(macs=(), wireless=(), serial=None, hostname=None)
WLAN = Facts(macs=(), wireless=("wlan0",), serial=None, hostname=None)
# IEEE 802.11i, annex H.4 test vector: passphrase "password", SSID "IEEE".
IEEE_PSK = "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


def body(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(True)
                   if not line.startswith("#"))


def test_static_and_dhcp_interfaces_and_stale_removal(tmp_path: Path) -> None:
    net = tmp_path / network.NETWORK_DIR
    net.mkdir(parents=True)
    (net / "10-osbuilder-eth9.network").write_text("[Match]\nName=eth9\n")  # from before
    (net / "99-admin.network").write_text("kept")  # not ours
    cfg = parse({"k3os": {"network": {
        "eth0": {"addresses": ["192.168.1.10/24", "fd00::10/64"], "gateway": "192.168.1.1",
                 "dns": ["192.168.1.1"]},
        "enp*": {"dhcp": True},
    }}})
    network.apply(cfg, NO_WIFI, tmp_path)
    assert body(net / "10-osbuilder-eth0.network") == (
        "[Match]\nName=eth0\n\n[Network]\nDHCP=no\nAddress=192.168.1.10/24\n"
        "Address=fd00::10/64\nGateway=192.168.1.1\nDNS=192.168.1.1\n")
    glob_file = network.file_name("enp*")
    assert glob_file.startswith("10-osbuilder-enp_-") and glob_file.endswith(".network")
    assert body(net / glob_file) == "[Match]\nName=enp*\n\n[Network]\nDHCP=yes\n"
    assert not (net / "10-osbuilder-eth9.network").exists()
    assert (net / "99-admin.network").read_text() == "kept"
    network.apply(parse({}), NO_WIFI, tmp_path)
    assert sorted(p.name for p in net.iterdir()) == ["99-admin.network"]


def test_bad_address_names_the_key(tmp_path: Path) -> None:
    cfg = parse({"k3os": {"network": {"eth0": {"addresses": ["192.168.1.10"]}}}})
    with pytest.raises(OsbError, match=r"k3os\.network\.eth0\.addresses\[0\]: .*prefix"):
        network.apply(cfg, NO_WIFI, tmp_path)
    cfg = parse({"k3os": {"network": {"eth0": {"gateway": "router"}}}})
    with pytest.raises(OsbError, match=r"k3os\.network\.eth0\.gateway: 'router'"):
        network.apply(cfg, NO_WIFI, tmp_path)


def test_wifi_supplicant_unit_and_network(tmp_path: Path) -> None:
    cfg = parse({"k3os": {"wifi": [{"name": "IEEE", "passphrase": "password"},
                                   {"name": 'Café "guest"\\'},
                                   {"name": "Open Net"}]}})
    wifi.apply(cfg, WLAN, tmp_path)
    conf = tmp_path / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    assert mode(conf) == 0o600
    odd_hex = 'Café "guest"\\'.encode().hex()
    assert body(conf) == (
        "ctrl_interface=/run/wpa_supplicant\nupdate_config=0\n"
        f'\nnetwork={{\n\tssid="IEEE"\n\tkey_mgmt=WPA-PSK\n\tpsk={IEEE_PSK}\n\tpriority=3\n}}\n'
        f"\nnetwork={{\n\tssid={odd_hex}\n\tkey_mgmt=NONE\n\tpriority=2\n}}\n"
        '\nnetwork={\n\tssid="Open Net"\n\tkey_mgmt=NONE\n\tpriority=1\n}\n')
    assert "password" not in conf.read_text()  # only the derived key is stored
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"
    assert os.readlink(link) == "/usr/lib/systemd/system/wpa_supplicant@.service"
    net = tmp_path / "etc/systemd/network/20-osbuilder-wifi-wlan0.network"
    assert body(net) == "[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n"
    wifi.apply(parse({}), WLAN, tmp_path)  # Wi-Fi dropped from the config
    assert not conf.exists() and not link.is_symlink() and not net.exists()


def test_wifi_without_wireless_nic_writes_nothing(tmp_path: Path) -> None:
    wifi.apply(parse({"k3os": {"wifi": [{"name": "x"}]}}), NO_WIFI, tmp_path)
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("passphrase", ["short", "x" * 64, "tab\there!"])
def test_bad_passphrase_names_the_key(tmp_path: Path, passphrase: str) -> None:
    cfg = parse({"k3os": {"wifi": [{"name": "ok", "passphrase": "long enough"},
                                   {"name": "home", "passphrase": passphrase}]}})
    with pytest.raises(OsbError, match=r"k3os\.wifi\[1\]\.passphrase: expected 8\.\.63"):
        wifi.apply(cfg, WLAN, tmp_path)
    assert not (tmp_path / "etc").exists()


def test_ssid_longer_than_32_bytes_is_refused(tmp_path: Path) -> None:
    cfg = parse({"k3os": {"wifi": [{"name": "é" * 17}]}})
    with pytest.raises(OsbError, match=r"k3os\.wifi\[0\]\.name: an SSID is 1\.\.32 bytes"):
        wifi.apply(cfg, WLAN, tmp_path)
