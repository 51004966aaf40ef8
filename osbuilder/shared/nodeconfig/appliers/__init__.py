"""Appliers: each turns the NodeConfig into files under a root directory ("/" on the
node, a temp dir in tests). They run in APPLIERS order at every boot; each is idempotent,
so a second run in the same boot changes no file.

Each applier declares its `check` beside its `apply`; the loader runs every check before
any applier writes anything (the workstation's validate-config runs the same checks), so
a bad config is never half-applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers import (
    data_sources,
    dns,
    environment,
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


@dataclass(frozen=True)
class Applier:
    name: str
    # raises OsbError naming the key for anything `apply` would refuse; writes nothing
    check: Callable[[NodeConfig, Accounts], None]
    apply: Callable[[NodeConfig, Facts, Path], None]


APPLIERS: tuple[Applier, ...] = tuple(Applier(m.__name__.rsplit(".", 1)[-1], m.check, m.apply)
                                      for m in (
    hostname, users, ssh_keys, kernel, timesync, dns, network, wifi, environment,
    data_sources, k3s,
    # Last, so a k3OS-style write_files entry (say a hand-written k3s config.yaml) wins.
    write_files,
))


def check_all(cfg: NodeConfig, accounts: Accounts) -> list[OsbError]:
    """Every applier's own check (one problem each at most); nothing written."""
    problems = []
    for a in APPLIERS:
        try:
            a.check(cfg, accounts)
        except OsbError as exc:
            problems.append(exc)
    return problems


def apply_all(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    problems = check_all(cfg, Accounts.of_root(root))
    if problems:
        raise problems[0]
    for a in APPLIERS:
        a.apply(cfg, facts, root)
