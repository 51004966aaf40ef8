"""/etc/hostname and /etc/hosts. An unset hostname is generated once and then kept in
/var (persistent), so a node keeps its name when a NIC is swapped or /etc is rebuilt."""

from __future__ import annotations

import re
from pathlib import Path

from osbuilder.shared.file_writes import HEADER, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

STATE = "var/lib/osbuilder/hostname"
PREFIX = "osb-"
VALID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def _generated(facts: Facts, root: Path) -> str:
    if facts.macs:
        return PREFIX + facts.macs[0].replace(":", "").lower()[-6:]
    machine_id = _text(root / "etc/machine-id").lower()
    if re.fullmatch(r"[0-9a-f]{6,}", machine_id):
        return PREFIX + machine_id[:6]
    # No NIC and no machine-id (a container, say): random, and kept like any other.
    import secrets  # only for a node without a name: not imported at every boot

    return PREFIX + secrets.token_hex(3)


def resolve_hostname(cfg: NodeConfig, facts: Facts, root: Path) -> str:
    """The configured hostname, else the one generated on the first boot (made now)."""
    if cfg.hostname:
        return cfg.hostname
    state = root / STATE
    kept = _text(state)
    if VALID.match(kept):
        return kept
    name = _generated(facts, root)
    write_atomic(state, name + "\n")
    return name


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Nothing beyond the schema's hostname pattern."""
    return None

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    name = resolve_hostname(cfg, facts, root)
    write_atomic(root / "etc/hostname", name + "\n")
    write_atomic(root / "etc/hosts", (
        HEADER
        + "127.0.0.1 localhost\n"
        # a fully qualified name resolves with its short one, as Debian writes it
        + f"127.0.1.1 {name}{' ' + name.split('.')[0] if '.' in name else ''}\n"
        + "::1 localhost ip6-localhost ip6-loopback\n"
    ))
