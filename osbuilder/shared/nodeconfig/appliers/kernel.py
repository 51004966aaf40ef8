"""Kernel modules to load (modules-load.d) and kernel parameters (sysctl.d)."""

from __future__ import annotations

import re
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import HEADER, write_or_remove
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.values import one_line
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

MODULES = "etc/modules-load.d/osbuilder.conf"
SYSCTL = "etc/sysctl.d/90-osbuilder.conf"
MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
SYSCTL_KEY = re.compile(r"^-?[A-Za-z0-9_.*/-]+$")


def modules_conf(cfg: NodeConfig) -> str | None:
    for i, name in enumerate(cfg.modules):
        if not MODULE_NAME.match(name):
            raise OsbError(f"k3os.modules[{i}]: {name!r} is not a kernel module name")
    return HEADER + "".join(f"{m}\n" for m in cfg.modules) if cfg.modules else None


def sysctl_conf(cfg: NodeConfig) -> str | None:
    for key, value in cfg.sysctl:
        if not SYSCTL_KEY.match(key):
            raise OsbError(f"k3os.sysctl.{key}: not a sysctl key (like net.ipv4.ip_forward)")
        one_line(value, f"k3os.sysctl.{key}")
    return HEADER + "".join(f"{k} = {v}\n" for k, v in cfg.sysctl) if cfg.sysctl else None


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Module names and sysctl keys and values, as the files would hold them."""
    modules_conf(cfg)
    sysctl_conf(cfg)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    modules, sysctl = modules_conf(cfg), sysctl_conf(cfg)  # both may raise: before writing
    write_or_remove(root / MODULES, modules)
    write_or_remove(root / SYSCTL, sysctl)
