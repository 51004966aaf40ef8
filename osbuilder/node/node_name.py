"""This node's name in Kubernetes, one fact for the health gate, the fleet watcher and
`status`: k3s registers a node as its `node-name` setting, else as the host name,
lower-cased (k3s pkg/agent/config getHostnameAndIPs: `nodeName = strings.ToLower(name)`
after `os.Hostname()` when --node-name is empty)."""

from __future__ import annotations

import os
from pathlib import Path

K3S_CONFIG = Path("/etc/rancher/k3s/config.yaml")


def node_name(k3s_config: Path = K3S_CONFIG, hostname: str | None = None) -> str:
    import yaml

    try:
        cfg = yaml.safe_load(k3s_config.read_text()) or {}
    except (OSError, yaml.YAMLError, RecursionError):
        cfg = {}
    name = cfg.get("node-name") if isinstance(cfg, dict) else None
    if isinstance(name, list):  # the config file's form of a repeated flag: the last wins
        name = name[-1] if name else None
    return str(name) if name else (hostname or os.uname().nodename).lower()
