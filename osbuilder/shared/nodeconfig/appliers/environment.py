"""`k3os.environment` in /etc/environment, as k3OS writes it (rancher/k3os pkg/cc/funcs.go
ApplyEnvironment; Debian's image ships the file empty): PAM sessions read it, and the
agent takes the proxy for its downloads (config_url, keys, manifests, upgrades) from it.
/etc/default/k3s (the k3s applier) carries the same variables to the k3s units."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.file_writes import HEADER, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.values import env_line
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

FILE = "etc/environment"


def render(cfg: NodeConfig) -> str:
    return HEADER + "".join(env_line(n, v, "k3os.environment") for n, v in cfg.k3s.environment)


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Names and values as a shell and systemd read them back."""
    render(cfg)


def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    # 0600, not k3OS's 0644: proxy URLs carry credentials; pam_env reads it as root
    write_atomic(root / FILE, render(cfg), 0o600)
