"""Facts about the machine the agent runs on, gathered once at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Facts:
    macs: tuple[str, ...]  # lower-case, of physical interfaces, sorted by interface name
    wireless: tuple[str, ...]  # wireless interface names (wlan0, wlp2s0)
    serial: str | None  # device-tree serial number or DMI product serial
    hostname: str | None  # current kernel hostname


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip("\x00\n ") or None
    except OSError:
        return None


def gather(sys_root: Path = Path("/")) -> Facts:
    net = sys_root / "sys/class/net"
    macs, wireless = [], []
    for iface in sorted(net.iterdir()) if net.is_dir() else []:
        if not (iface / "device").exists():  # lo, bridges, veth: not hardware
            continue
        mac = _read(iface / "address")
        if mac and mac != "00:00:00:00:00:00":
            macs.append(mac.lower())
        if (iface / "wireless").exists() or (iface / "phy80211").exists():
            wireless.append(iface.name)
    serial = (_read(sys_root / "proc/device-tree/serial-number")
              or _read(sys_root / "sys/class/dmi/id/product_serial"))
    return Facts(tuple(macs), tuple(wireless), serial,
                 _read(sys_root / "proc/sys/kernel/hostname"))
