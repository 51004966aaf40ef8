"""systemd-networkd files for the interfaces listed under `network:`. Wired interfaces
not listed are covered by the image's /usr/lib/systemd/network/80-osbuilder-dhcp.network."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import HEADER, remove, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.values import ip_address, ip_interface, one_line
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import Interface, NodeConfig

NETWORK_DIR = "etc/systemd/network"
PREFIX = "10-osbuilder-"


def file_name(match: str) -> str:
    """10-osbuilder-<name>.network; a glob gets a hash so `en*` and `en?` do not collide."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", match)
    if safe != match:
        safe += "-" + hashlib.sha256(match.encode()).hexdigest()[:8]
    return f"{PREFIX}{safe}.network"


def network_file(iface: Interface) -> str:
    key = f"k3os.network.{iface.match}"
    # Name= takes a space-separated list: a blank would match interfaces not asked for.
    if not iface.match or any(c.isspace() for c in iface.match):
        raise OsbError(f"{key}: an interface name or glob cannot contain blanks")
    lines = ["[Match]", f"Name={iface.match}", "", "[Network]",
             f"DHCP={'yes' if iface.dhcp else 'no'}"]
    lines += [f"Address={ip_interface(a, f'{key}.addresses[{i}]')}"
              for i, a in enumerate(iface.addresses)]
    if iface.gateway:
        lines.append(f"Gateway={ip_address(one_line(iface.gateway, key), f'{key}.gateway')}")
    lines += [f"DNS={ip_address(d, f'{key}.dns[{i}]')}" for i, d in enumerate(iface.dns)]
    return HEADER + "\n".join(lines) + "\n"


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Interface names and addresses, as networkd would read them."""
    for iface in cfg.network:
        network_file(iface)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    net_dir = root / NETWORK_DIR
    wanted = {file_name(i.match): network_file(i) for i in cfg.network}
    for name, text in wanted.items():
        write_atomic(net_dir / name, text)
    # Interfaces removed from the config lose their file (matters for a re-run in one boot).
    for stale in sorted(net_dir.glob(f"{PREFIX}*.network")):
        if stale.name not in wanted:
            remove(stale)
