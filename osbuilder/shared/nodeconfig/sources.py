"""Where node config comes from, and the merge order (k3OS's, extended).

image default -> kernel cmdline -> boot partition config.yaml -> config.d/*.yaml ->
cloud key pair -> cloud user-data -> config_url -> per-device `nodes:` entries matching
this machine.
Maps merge, lists and scalars replace. Each source's `osbuilder:` block is folded into
`k3os:` before merging, so both spellings layer in source order.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.schema import load_schema

CMDLINE_PREFIXES = ("osb.", "k3os.")
TOP_LEVEL_CMDLINE = ("hostname",)


@dataclass(frozen=True)
class Source:
    name: str
    data: dict[str, Any]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Fold `osbuilder:` into `k3os:` (osbuilder: wins within one source)."""
    if "osbuilder" not in data:
        return data
    out = {k: v for k, v in data.items() if k != "osbuilder"}
    block = data["osbuilder"] if isinstance(data["osbuilder"], dict) else {}
    k3os = out.get("k3os") if isinstance(out.get("k3os"), dict) else {}
    out["k3os"] = merge(k3os or {}, block)
    return out


def load_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise OsbError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OsbError(f"{source}: expected a mapping of keys at the top level, "
                       f"got {type(data).__name__}")
    return normalize(data)


def _typed(path: list[str], value: str) -> Any:
    """Type a cmdline value by what the schema expects at that key path."""
    schema = load_schema("config.schema.json")
    node: dict[str, Any] = schema["properties"] if path[0] in TOP_LEVEL_CMDLINE else \
        schema["$defs"]["block"]["properties"]
    spec: dict[str, Any] = {}
    for part in path[0 if path[0] in TOP_LEVEL_CMDLINE else 1:]:
        spec = node.get(part, {})
        node = spec.get("properties", {})
    if "$ref" in spec:
        spec = schema["$defs"][spec["$ref"].rsplit("/", 1)[-1]]
    if spec.get("type") == "boolean":
        return value.lower() in ("1", "true", "yes", "on")
    if spec.get("type") == "array":
        return [v for v in value.split(",") if v]
    return value


def from_cmdline(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(config, control) from /proc/cmdline: `osb.server_url=...` / `k3os.token=...` set
    block keys, `osb.install.device=` nested ones; mode and config_url are control."""
    config: dict[str, Any] = {}
    control: dict[str, str] = {}
    for arg in text.split():
        key, sep, value = arg.partition("=")
        if not sep:
            continue
        if key == "config_url":
            control["config_url"] = value
            continue
        prefix = next((p for p in CMDLINE_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        path = key[len(prefix):].split(".")
        if path[0] in ("mode", "config_url", "slot", "live"):
            control[path[0]] = value
            continue
        if path[0] in TOP_LEVEL_CMDLINE:
            config[path[0]] = value
            continue
        node = config.setdefault("k3os", {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _typed(["k3os", *path], value)
    return config, control


def boot_partition(boot_dir: Path) -> list[Source]:
    out = []
    main = boot_dir / "config.yaml"
    if main.is_file():
        out.append(Source(str(main), load_yaml_mapping(main.read_text(), str(main))))
    for f in sorted((boot_dir / "config.d").glob("*.yaml")):
        out.append(Source(str(f), load_yaml_mapping(f.read_text(), str(f))))
    return out


# What the agent takes from a #cloud-config: its own block, and the keys whose cloud-init
# modules the image turns off because the agent owns them (overlays/cloud-init).
CLOUD_CONFIG_KEYS = ("k3os", "hostname", "ssh_authorized_keys")


def cloud_user_data(path: Path) -> Source | None:
    """cloud-init's copy of the user-data: a k3OS-style YAML (all of it is ours), or a
    #cloud-config of which we take CLOUD_CONFIG_KEYS (cloud-init runs the rest)."""
    if not path.is_file():
        return None
    text = path.read_text(errors="replace")
    first = text.lstrip().split("\n", 1)[0]
    if first.startswith("#!") or first.startswith("Content-Type"):
        return None  # scripts and MIME multipart are cloud-init's business
    data = load_yaml_mapping(text, str(path))
    if first.startswith("#cloud-config"):
        data = {k: v for k, v in data.items() if k in CLOUD_CONFIG_KEYS}
    return Source(str(path), data)


def cloud_key_pair(path: Path) -> Source | None:
    """The SSH keys the cloud's metadata names (EC2: the instance's key pair), from
    cloud-init's instance-data.json; ssh_authorized_keys in user-data replaces them."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = (data.get("v1") or {}).get("public_ssh_keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        return None
    return Source(str(path), {"ssh_authorized_keys": [str(k) for k in keys]})


def device_overrides(merged: dict[str, Any], facts: Facts) -> list[Source]:
    """`nodes:` entries whose `match` fits this machine, in file order."""
    out = []
    hostname = merged.get("hostname") or facts.hostname
    for i, entry in enumerate(merged.get("nodes") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), dict):
            continue
        m = entry["match"]
        ok = (("mac" not in m or str(m["mac"]).lower() in facts.macs)
              and ("serial" not in m or m["serial"] == facts.serial)
              and ("hostname" not in m or m["hostname"] == hostname))
        if ok:
            body = normalize({k: v for k, v in entry.items() if k != "match"})
            out.append(Source(f"nodes[{i}]", body))
    return out


def merge_all(sources: list[Source], facts: Facts) -> tuple[dict[str, Any], list[str]]:
    """Merge in order, then the matching per-device entries; returns (config, names)."""
    merged: dict[str, Any] = {}
    for s in sources:
        merged = merge(merged, s.data)
    used = [s.name for s in sources if s.data]
    for s in device_overrides(merged, facts):
        merged = merge(merged, s.data)
        used.append(s.name)
    return merged, used
