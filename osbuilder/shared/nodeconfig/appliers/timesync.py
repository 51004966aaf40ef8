"""NTP servers for systemd-timesyncd (a drop-in, so the image's defaults stay below)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.file_writes import HEADER, write_or_remove
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.values import server_list
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

DROPIN = "etc/systemd/timesyncd.conf.d/50-osbuilder.conf"


def dropin(cfg: NodeConfig) -> str | None:
    if not cfg.ntp_servers:
        return None
    return HEADER + "[Time]\nNTP=" + server_list(cfg.ntp_servers, "k3os.ntp_servers") + "\n"


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Each NTP server is one word."""
    dropin(cfg)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    write_or_remove(root / DROPIN, dropin(cfg))
