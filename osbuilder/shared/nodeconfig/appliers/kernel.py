"""Kernel modules to load (modules-load.d, their parameters in modprobe.d) and kernel
parameters (sysctl.d). A modules entry may carry parameters, as on k3OS
(rancher/k3os pkg/module: "nvme_core multipath=0")."""

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
OPTIONS = "etc/modprobe.d/osbuilder.conf"
PARAMETER = re.compile(r"^[A-Za-z0-9_.-]+(=\S+)?$")
SYSCTL = "etc/sysctl.d/90-osbuilder.conf"
MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
SYSCTL_KEY = re.compile(r"^-?[A-Za-z0-9_.*/-]+$")


def modules(cfg: NodeConfig) -> list[tuple[str, list[str]]]:
    """(module, parameters) per entry."""
    out = []
    for i, entry in enumerate(cfg.modules):
        name, *params = entry.split()
        if not MODULE_NAME.match(name or ""):
            raise OsbError(f"k3os.modules[{i}]: {name!r} is not a kernel module name")
        bad = [p for p in params if not PARAMETER.match(p)]
        if bad:
            raise OsbError(f"k3os.modules[{i}]: {bad[0]!r} is not a module parameter "
                           "(name=value)")
        out.append((name, params))
    return out


def modules_conf(cfg: NodeConfig) -> str | None:
    return HEADER + "".join(f"{m}\n" for m, _ in modules(cfg)) if cfg.modules else None


def options_conf(cfg: NodeConfig) -> str | None:
    lines = [f"options {m} {' '.join(p)}\n" for m, p in modules(cfg) if p]
    return HEADER + "".join(lines) if lines else None


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
    # each may raise: all of them before writing
    load, options, sysctl = modules_conf(cfg), options_conf(cfg), sysctl_conf(cfg)
    write_or_remove(root / MODULES, load)
    write_or_remove(root / OPTIONS, options)
    write_or_remove(root / SYSCTL, sysctl)
