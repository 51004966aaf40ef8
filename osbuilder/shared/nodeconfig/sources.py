"""Where node config comes from, and the merge order (k3OS's, extended).

image default -> kernel cmdline -> boot partition config.yaml -> config.d/*.yaml ->
cloud key pair -> cloud user-data -> config_url -> per-device `nodes:` entries matching
this machine.
Maps merge, lists and scalars replace. Each source's `osbuilder:` block is folded into
`k3os:` before merging, so both spellings layer in source order.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.schema import load_schema
from osbuilder.shared.yaml_input import load_mapping

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
    """Fold `osbuilder:` into `k3os:` (osbuilder: wins within one source). A block that is
    not a mapping is left as it is, for the schema to name."""
    if not isinstance(data.get("osbuilder"), dict) or not isinstance(data.get("k3os", {}),
                                                                      dict):
        return data
    out = {k: v for k, v in data.items() if k != "osbuilder"}
    out["k3os"] = merge(out.get("k3os") or {}, data["osbuilder"])
    return out


def binary_content(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`!!binary` is allowed as write_files content only (cloud-init's way to carry gzip
    data); there it becomes base64 text, so every config is plain JSON-able data."""
    files = data.get("write_files")
    out = dict(data)
    if isinstance(files, list):
        out["write_files"] = [_binary_entry(e, f"{source}: write_files[{i}]")
                              for i, e in enumerate(files)]
    _refuse_bytes(out, source, "")
    return out


def _binary_entry(entry: Any, where: str) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), bytes):
        return entry
    encoding = entry.get("encoding", "")
    if encoding not in ("", "gz", "gzip"):
        raise ConfigError(f"{where}.encoding", f"{encoding!r} with !!binary content: the "
                          "content is decoded already (use gz, gzip or no encoding)")
    text = base64.b64encode(entry["content"]).decode()
    return {**entry, "content": text, "encoding": f"{encoding}+b64" if encoding else "b64"}


def _refuse_bytes(value: Any, source: str, where: str) -> None:
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, bytes):
            raise ConfigError(f"{source}: {at or '(top level)'}",
                              "a YAML !!binary value is only allowed as write_files content")
        if isinstance(v, dict):
            stack += [(c, f"{at}.{k}" if at else k) for k, c in v.items()]
        elif isinstance(v, list):
            stack += [(c, f"{at}[{i}]") for i, c in enumerate(v)]


def load_yaml_mapping(data: bytes | str, source: str) -> dict[str, Any]:
    """One config source's text as plain data, `osbuilder:` folded into `k3os:`."""
    return normalize(binary_content(load_mapping(data, source), source))


def read_source(path: Path) -> dict[str, Any]:
    """A config file, read no further than the size limit."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read it: {exc.strerror}") from None
    return load_yaml_mapping(data, str(path))


def _typed(path: list[str], value: str) -> Any:
    """Type a cmdline value by what the schema expects at that key path."""
    schema = load_schema("config.schema.json")
    defs = schema["$defs"]
    node: dict[str, Any] = (defs["config"] if path[0] in TOP_LEVEL_CMDLINE
                            else defs["block"])["properties"]
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
    block keys, `osb.install.device=` nested ones; mode and config_url are control.
    A key given twice or both as a value and as a map (osb.a=1 osb.a.b=2): the last wins."""
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
        if not all(path):
            continue  # osb.=x, osb.a..b=x: no key to set
        if path[0] in ("mode", "config_url", "config_url_allow_http", "slot", "live"):
            control[path[0]] = value
            continue
        if path[0] in TOP_LEVEL_CMDLINE:
            config[path[0]] = value
            continue
        node = config.setdefault("k3os", {})
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = _typed(["k3os", *path], value)
    return config, control


def boot_partition(boot_dir: Path) -> list[Source]:
    out = []
    main = boot_dir / "config.yaml"
    if main.is_file():
        out.append(Source(str(main), read_source(main)))
    for f in sorted((boot_dir / "config.d").glob("*.yaml")):
        out.append(Source(str(f), read_source(f)))
    return out


# What the agent takes from a #cloud-config: its own block, and the keys whose cloud-init
# modules the image turns off because the agent owns them (overlays/cloud-init).
CLOUD_CONFIG_KEYS = ("k3os", "hostname", "ssh_authorized_keys")


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
    data = load_yaml_mapping(raw, str(path))
    if first.startswith(b"#cloud-config"):
        data = {k: v for k, v in data.items() if k in CLOUD_CONFIG_KEYS}
    return Source(str(path), data)


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
