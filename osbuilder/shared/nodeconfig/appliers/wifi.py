"""Wi-Fi: one wpa_supplicant@<iface> per wireless interface, networks tried in config
order, and a DHCP networkd file for the interface."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import HEADER, remove, symlink, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig, Wifi

CONF = "etc/wpa_supplicant/wpa_supplicant-{}.conf"
WANTS = "etc/systemd/system/multi-user.target.wants/wpa_supplicant@{}.service"
UNIT = "/usr/lib/systemd/system/wpa_supplicant@.service"
NETWORK = "etc/systemd/network/20-osbuilder-wifi-{}.network"
IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


def ssid_value(name: str, key: str) -> str:
    """Quoted when plain printable ASCII; otherwise hex, which wpa_supplicant reads as bytes
    and which no quote, backslash or newline in an SSID can break out of."""
    raw = name.encode()
    if not 1 <= len(raw) <= 32:
        raise OsbError(f"{key}: an SSID is 1..32 bytes, got {len(raw)}")
    if PRINTABLE.match(name) and '"' not in name and "\\" not in name:
        return f'"{name}"'
    return raw.hex()


def psk(wifi: Wifi, key: str) -> str:
    """The 256-bit WPA key (IEEE 802.11i PBKDF2), so the passphrase is not stored as text
    and needs no quoting."""
    p = wifi.passphrase or ""
    if not 8 <= len(p) <= 63 or not PRINTABLE.match(p):
        raise OsbError(f"{key}: expected 8..63 printable ASCII characters, got {len(p)}")
    return hashlib.pbkdf2_hmac("sha1", p.encode(), wifi.name.encode(), 4096, 32).hex()


def wpa_conf(cfg: NodeConfig) -> str:
    out = [HEADER, "ctrl_interface=/run/wpa_supplicant\n", "update_config=0\n"]
    for i, w in enumerate(cfg.wifi):
        key = f"k3os.wifi[{i}]"
        auth = "key_mgmt=NONE" if w.passphrase is None else (
            f"key_mgmt=WPA-PSK\n\tpsk={psk(w, f'{key}.passphrase')}")
        # Higher priority is tried first: the first network in the config wins.
        out.append(f"\nnetwork={{\n\tssid={ssid_value(w.name, f'{key}.name')}\n"
                   f"\t{auth}\n\tpriority={len(cfg.wifi) - i}\n}}\n")
    return "".join(out)


def _ours(root: Path) -> set[str]:
    pattern = re.compile(r"^20-osbuilder-wifi-(.+)\.network$")
    found = (pattern.match(p.name) for p in (root / NETWORK).parent.glob("20-osbuilder-*"))
    return {m.group(1) for m in found if m}


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """SSIDs and passphrases, as wpa_supplicant would read them."""
    if cfg.wifi:
        wpa_conf(cfg)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    ifaces = [i for i in facts.wireless if IFACE.match(i)] if cfg.wifi else []
    conf = wpa_conf(cfg) if cfg.wifi else ""  # checks the passphrases even without a NIC
    for iface in ifaces:
        write_atomic(root / CONF.format(iface), conf, 0o600)
        symlink(root / WANTS.format(iface), UNIT)
        write_atomic(root / NETWORK.format(iface),
                     HEADER + f"[Match]\nName={iface}\n\n[Network]\nDHCP=yes\n")
    for iface in _ours(root) - set(ifaces):
        remove(root / NETWORK.format(iface))
        remove(root / CONF.format(iface))
        remove(root / WANTS.format(iface))
