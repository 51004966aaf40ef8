"""Where node config comes from, and the merge order (k3OS's, extended).

image default -> kernel cmdline -> boot partition config.yaml -> its config.d/*.yaml ->
/var/lib/rancher/k3os/config.yaml (k3OS's local config, on the data partition) -> cloud
key pair -> cloud user-data -> /var/lib/rancher/k3os/config.d/* -> config_url ->
per-device `nodes:` entries matching this machine.
Maps merge, lists and scalars replace. Each source's `osbuilder:` block is folded into
`k3os:` before merging, so both spellings layer in source order (source_text.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.nodeconfig.source_text import (
    Origins,
    Source,
    fold_block,
    merge,
    parse_data,
    parse_source,
    read_source,
)
from osbuilder.shared.yaml_input import load_mapping

# k3OS's local config on the persistent disk (rancher/k3os pkg/config/read.go
# readLocalConfig, readLocalConfigs): the file, then every file of the folder, by name
K3OS_LOCAL = Path("var/lib/rancher/k3os/config.yaml")
K3OS_LOCAL_DIR = Path("var/lib/rancher/k3os/config.d")


def boot_partition(boot_dir: Path) -> list[Source]:
    out = []
    main = boot_dir / "config.yaml"
    if main.is_file():
        out.append(read_source(main))
    out += [read_source(f) for f in sorted((boot_dir / "config.d").glob("*.yaml"))]
    return out


def k3os_local(root: Path) -> list[Source]:
    """/var/lib/rancher/k3os/config.yaml (config.d comes later: k3os_local_dir)."""
    path = root / K3OS_LOCAL
    return [read_source(path, f"/{K3OS_LOCAL}")] if path.is_file() else []


def k3os_local_dir(root: Path) -> list[Source]:
    folder = root / K3OS_LOCAL_DIR
    files = sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
    return [read_source(f, f"/{K3OS_LOCAL_DIR}/{f.name}") for f in files]


# What the agent takes from a #cloud-config: its own block, and the keys whose cloud-init
# modules the image turns off because the agent owns them (overlays/cloud-init).
CLOUD_CONFIG_KEYS = ("k3os", "osbuilder", "hostname", "ssh_authorized_keys")


def cloud_user_data(path: Path) -> Source | None:
    """cloud-init's copy of the user-data: a k3OS-style YAML (all of it is ours), or a
    #cloud-config of which we take CLOUD_CONFIG_KEYS (cloud-init runs the rest)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read it: {exc.strerror}") from None
    first = raw.lstrip().split(b"\n", 1)[0]
    if first.startswith(b"#!") or first.startswith(b"Content-Type"):
        return None  # scripts and MIME multipart are cloud-init's business
    if not first.startswith(b"#cloud-config"):
        return parse_source(raw, str(path))
    # cloud-init's own keys (runcmd, users, ...) are cloud-init's: not even a warning
    data = load_mapping(raw, str(path))
    return parse_data({k: v for k, v in data.items() if k in CLOUD_CONFIG_KEYS}, str(path))


def cloud_key_pair(path: Path) -> Source | None:
    """The SSH keys the cloud's metadata names (EC2: the instance's key pair), from
    cloud-init's instance-data.json; ssh_authorized_keys in user-data replaces them."""
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_SOURCE_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return None
    v1 = data.get("v1") if isinstance(data, dict) else None
    keys = v1.get("public_ssh_keys") if isinstance(v1, dict) else None
    if not isinstance(keys, list) or not keys:
        return None
    return Source(str(path), {"ssh_authorized_keys": [str(k) for k in keys]})


def device_overrides(merged: dict[str, Any], facts: Facts) -> list[Source]:
    """`nodes:` entries whose `match` fits this machine, in file order."""
    out: list[Source] = []
    hostname = merged.get("hostname") or facts.hostname
    entries = merged.get("nodes")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), dict):
            continue  # the schema names what is wrong with it
        m = entry["match"]
        ok = (("mac" not in m or str(m["mac"]).lower() in facts.macs)
              and ("serial" not in m or m["serial"] == facts.serial)
              and ("hostname" not in m or m["hostname"] == hostname))
        if ok:
            body = fold_block({k: v for k, v in entry.items() if k != "match"})
            out.append(Source(f"nodes[{i}]", body))
    return out


def merge_all(sources: list[Source], facts: Facts, origins: Origins | None = None
              ) -> tuple[dict[str, Any], list[str]]:
    """Merge in order, then the matching per-device entries; returns (config, names).
    `origins`, if given, learns which source each value came from."""
    merged: dict[str, Any] = {}
    for s in sources:
        merged = merge(merged, s.data, origins, s.name)
    used = [s.name for s in sources if s.data]
    for s in device_overrides(merged, facts):
        merged = merge(merged, s.data, origins, s.name)
        used.append(s.name)
    return merged, used
