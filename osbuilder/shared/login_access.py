"""Does a node config let anyone in? Asked by `validate-config` on the workstation (to
warn) and by the node at boot (to offer a one-time console password instead,
osbuilder.node.first_login)."""

from __future__ import annotations

from osbuilder.shared.nodeconfig.model import NodeConfig

ACCESS_WARNING = (
    "no password (k3os.password) and no SSH keys (ssh_authorized_keys): nobody can log in "
    "with this config alone; the node will print a one-time password for `osb` on its "
    "local console at boot (docs/config.md, Logging in)")


def has_way_in(cfg: NodeConfig) -> bool:
    """A password for `osb`, or SSH keys (literal, github:/gitlab: or a URL)."""
    return bool(cfg.password) or bool(cfg.ssh_authorized_keys)
