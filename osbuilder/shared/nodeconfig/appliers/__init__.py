"""Appliers: each turns the NodeConfig into files under a root directory ("/" on the
node, a temp dir in tests). They run in APPLIERS order at every boot; each is idempotent,
so a second run in the same boot changes no file.

Call `validate` first: it raises the user's config errors before any applier has written
anything, so a bad config is never half-applied.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from osbuilder.shared.nodeconfig.appliers import (
    dns,
    hostname,
    k3s,
    kernel,
    network,
    ssh_keys,
    timesync,
    users,
    wifi,
    write_files,
)
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

Applier = Callable[[NodeConfig, Facts, Path], None]

APPLIERS: list[tuple[str, Applier]] = [
    ("hostname", hostname.apply),
    ("users", users.apply),
    ("ssh_keys", ssh_keys.apply),
    ("kernel", kernel.apply),
    ("timesync", timesync.apply),
    ("dns", dns.apply),
    ("network", network.apply),
    ("wifi", wifi.apply),
    ("k3s", k3s.apply),
    # Last, so a k3OS-style write_files entry (say a hand-written k3s config.yaml) wins.
    ("files", write_files.apply),
]


def validate(cfg: NodeConfig, root: Path) -> None:
    """Raise OsbError (naming the key) for anything an applier would refuse; writes nothing."""
    users.check_password(cfg)
    write_files.plan(cfg, root)
    kernel.modules_conf(cfg)
    kernel.sysctl_conf(cfg)
    timesync.dropin(cfg)
    dns.dropin(cfg)
    for iface in cfg.network:
        network.network_file(iface)
    if cfg.wifi:
        wifi.wpa_conf(cfg)
    k3s.k3s_config(cfg.k3s)
    k3s.environment_file(cfg.k3s)


def apply_all(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    validate(cfg, root)
    for _name, applier in APPLIERS:
        applier(cfg, facts, root)
