"""k3s: /etc/rancher/k3s/config.yaml and registries.yaml, its environment, the manifests
a server deploys, and which of k3s.service / k3s-agent.service starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import HEADER, remove, symlink, write_atomic, write_or_remove
from osbuilder.shared.nodeconfig import k3s_args
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.values import env_line
from osbuilder.shared.nodeconfig.downloads import fetch_bytes, fetch_file
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.limits import MAX_AIRGAP_IMAGE_BYTES, MAX_MANIFEST_BYTES
from osbuilder.shared.nodeconfig.model import K3s, NodeConfig

CONFIG = "etc/rancher/k3s/config.yaml"
REGISTRIES = "etc/rancher/k3s/registries.yaml"
ENVIRONMENT = "etc/default/k3s"
MANIFESTS = "var/lib/rancher/k3s/server/manifests"
# manifests every server deploys (the OSUpgrade CRD), shipped in the read-only image
IMAGE_MANIFESTS = "usr/share/osbuilder/manifests"
WANTS = "etc/systemd/system/multi-user.target.wants"
UNITS = {"server": "k3s.service", "agent": "k3s-agent.service"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def unit_for(cfg: NodeConfig) -> str:
    return UNITS[cfg.k3s.role]


def k3s_config(k: K3s) -> dict[str, Any]:
    """/etc/rancher/k3s/config.yaml: k3s reads its flags from it (a flag's name without
    the dashes as key; repeatable flags as lists)."""
    server = k.role == "server"
    c: dict[str, Any] = {}
    if k.token:
        c["token"] = k.token
    if k.server_url:
        # k3OS exports K3S_URL whenever server_url is set, whatever the role (rancher/k3os
        # pkg/cc/funcs.go ApplyK3S): with `k3s_args: [server]` that is how a server joins
        # an existing cluster (k3s server's --server, env K3S_URL)
        c["server"] = k.server_url
    if k.labels:
        c["node-label"] = [f"{name}={value}" for name, value in k.labels]
    if k.taints:
        c["node-taint"] = list(k.taints)
    if k.node_ip:
        c["node-ip"] = k.node_ip
    if server:  # server-only flags: an agent has no use for them
        if k.tls_san:
            c["tls-san"] = list(k.tls_san)
        if k.flannel_backend:
            c["flannel-backend"] = k.flannel_backend
        if k.disable:
            c["disable"] = list(k.disable)
        if k.cluster_init:
            c["cluster-init"] = True
        if k.datastore_endpoint:
            c["datastore-endpoint"] = k.datastore_endpoint
    offset = 1 if k.role_from_args else 0
    for name, value in k3s_args.to_config(k.args, k.role, offset=offset).items():
        # List settings gain the extra values; a scalar given again is replaced, as on
        # a command line where the last flag wins.
        if isinstance(c.get(name), list):
            c[name] = c[name] + (value if isinstance(value, list) else [value])
        else:
            c[name] = value
    if not server and "server" not in c:
        raise OsbError("k3os.server_url: the agent role needs the server to join "
                       "(server_url: https://SERVER:6443)")
    if not server and "token" not in c:
        # k3s's install.sh, which k3OS ran, refuses an agent without a token; k3s would
        # start and stop at once
        raise OsbError("k3os.token: the agent role needs the cluster's token (or its "
                       "shared secret) to join")
    return c


def environment_file(k: K3s) -> str | None:
    if not k.environment:
        return None
    return HEADER + "".join(env_line(n, v, "k3os.environment") for n, v in k.environment)


def _dump(data: Any) -> str:
    return HEADER + yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """The k3s config and environment files can be written."""
    k3s_config(cfg.k3s)
    environment_file(cfg.k3s)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    k = cfg.k3s
    config, env = _dump(k3s_config(k)), environment_file(k)  # both may raise: before writing
    # 0600: these carry the cluster token, registry passwords and proxy credentials.
    write_atomic(root / CONFIG, config, 0o600)
    write_or_remove(root / REGISTRIES, _dump(k.registries) if k.registries else None, 0o600)
    write_or_remove(root / ENVIRONMENT, env, 0o600)
    if k.role == "server":
        for f in sorted((root / IMAGE_MANIFESTS).glob("*.yaml")):
            write_atomic(root / MANIFESTS / f"osbuilder-{f.name}", f.read_bytes(), 0o600)
        # k3s's own manifests share this folder, so nothing is ever removed from it.
        for m in k.manifests:
            if m.content is not None:
                write_atomic(root / MANIFESTS / m.name, m.content, 0o600)
    wants = root / WANTS
    unit = unit_for(cfg)
    symlink(wants / unit, f"/usr/lib/systemd/system/{unit}")
    for other in set(UNITS.values()) - {unit}:
        remove(wants / other)


def fetch_manifests(cfg: NodeConfig, root: Path) -> list[str]:
    """Download `url` manifests on a server; a failure is a warning and keeps the copy
    fetched before, so a node that boots offline still deploys what it had."""
    if cfg.k3s.role != "server":
        return []
    warnings: list[str] = []
    for i, m in enumerate(cfg.k3s.manifests):
        if m.url is None:
            continue
        where = f"k3os.manifests[{i}] ({m.name})"
        try:
            data = fetch_bytes(m.url, MAX_MANIFEST_BYTES)
            list(yaml.safe_load_all(data))  # an error page must not be deployed
        except (OsbError, yaml.YAMLError, RecursionError) as e:
            warnings.append(f"{where}: keeping the old copy: {str(e)[:200]}")
            continue
        write_atomic(root / MANIFESTS / m.name, data, 0o600)
    return warnings


AIRGAP_IMAGES = "var/lib/rancher/k3s/agent/images"


def fetch_airgap_images(cfg: NodeConfig, root: Path) -> list[str]:
    """Download `airgap_images` tarballs once into the folder k3s imports from at start,
    each checked against its sha256 before k3s can see it; kept on data, so later
    (offline) boots reuse them. Failures are warnings."""
    warnings: list[str] = []
    for i, image in enumerate(cfg.k3s.airgap_images):
        name = image.url.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if not NAME.match(name):
            warnings.append(f"k3os.airgap_images[{i}]: {name!r} is no file name to keep")
            continue
        dest = root / AIRGAP_IMAGES / name
        if dest.is_file():
            continue
        try:
            fetch_file(image.url, dest, image.sha256, MAX_AIRGAP_IMAGE_BYTES)
        except (OsbError, OSError) as e:
            warnings.append(f"k3os.airgap_images[{i}]: {str(e)[:200]}")
    return warnings
