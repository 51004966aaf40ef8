"""One config source's text (a file, user-data, the kernel command line) -> a Source: plain
data in osbuilder's spelling, with a warning per key it set aside.

bytes -> YAML (bounded, yaml_input) -> k3OS's spellings and coercions (k3os_compat) ->
`!!binary` write_files content as base64 -> the `osbuilder:` block folded into `k3os:`.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.nodeconfig.k3os_compat import Normalizer
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.schema import load_schema
from osbuilder.shared.yaml_input import load_mapping

CMDLINE_PREFIXES = ("osb.", "k3os.")
TOP_LEVEL_CMDLINE = ("hostname",)
# top-level config keys k3OS took from the command line without a prefix
TOP_LEVEL_FROM_CMDLINE = ("hostname", "ssh_authorized_keys", "init_cmd", "boot_cmd", "run_cmd")
CONTROL = ("mode", "config_url", "config_url_allow_http", "slot", "live")
# k3OS's cmdline tokens (rancher/k3os pkg/config/read.go readCmdline): a quoted word, or
# key=value whose value may be quoted and then holds blanks
TOKEN = re.compile(r'("[^"]+")|([^\s]+=("[^"]+")|([^\s]+))')


@dataclass(frozen=True)
class Source:
    name: str
    data: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())


@cache
def normalizer() -> Normalizer:
    return Normalizer()


# where each value of a merged config came from: key path -> source name
Origins = dict[tuple[str, ...], str]


def merge(base: dict[str, Any], over: dict[str, Any], origins: Origins | None = None,
          name: str = "", at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Maps merge key by key, everything else (lists included) is replaced; `origins`, if
    given, learns which source each replaced value came from."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, origins, name, (*at, k))
        else:
            out[k] = copy.deepcopy(v)
            if origins is not None:
                for stale in [p for p in origins if p[:len(at) + 1] == (*at, k)]:
                    del origins[stale]
                _record(v, (*at, k), name, origins)
    return out


def _record(value: Any, at: tuple[str, ...], name: str, origins: Origins) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _record(v, (*at, k), name, origins)
    else:
        origins[at] = name


def fold_block(data: dict[str, Any]) -> dict[str, Any]:
    """Fold `osbuilder:` into `k3os:` (osbuilder: wins within one source). A block that is
    not a mapping is left as it is, for the schema to name."""
    if not isinstance(data.get("osbuilder"), dict) or not isinstance(data.get("k3os", {}),
                                                                      dict):
        return data
    out = {k: v for k, v in data.items() if k != "osbuilder"}
    out["k3os"] = merge(out.get("k3os") or {}, data["osbuilder"])
    return out


def parse_data(raw: dict[str, Any], name: str) -> Source:
    """Plain data (from YAML or the command line) as osbuilder reads it."""
    data, warnings = normalizer().source(raw)
    data = binary_content(data, name)
    return Source(name, fold_block(data), tuple(f"{name}: {w}" for w in warnings))


def parse_source(data: bytes | str, name: str) -> Source:
    return parse_data(load_mapping(data, name), name)


def read_source(path: Path, name: str | None = None) -> Source:
    """A config file, read no further than the size limit."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read it: {exc.strerror}") from None
    return parse_source(data, name or str(path))


def binary_content(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`!!binary` is allowed as write_files content only (cloud-init's way to carry gzip
    data); there it becomes base64 text, so every config is plain JSON-able data."""
    files = data.get("write_files")
    out = dict(data)
    if isinstance(files, list):
        out["write_files"] = [_binary_entry(e, f"{source}: write_files[{i}]")
                              for i, e in enumerate(files)]
    _refuse_bytes(out, source)
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


def _refuse_bytes(value: Any, source: str) -> None:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        v, at = stack.pop()
        if isinstance(v, bytes):
            raise ConfigError(f"{source}: {at or '(top level)'}",
                              "a YAML !!binary value is only allowed as write_files content")
        if isinstance(v, dict):
            stack += [(c, f"{at}.{k}" if at else k) for k, c in v.items()]
        elif isinstance(v, list):
            stack += [(c, f"{at}[{i}]") for i, c in enumerate(v)]


def _typed(path: list[str], value: str, k3os: bool) -> Any:
    """A command-line value typed by what the schema expects at that key path: k3OS's
    prefix keeps a value whole (k3os.* repeated makes a list); osbuilder's splits lists
    at commas (osb.dns_nameservers=1.1.1.1,8.8.8.8)."""
    schema = load_schema("config.schema.json")
    defs = schema["$defs"]
    node: dict[str, Any] = (defs["config"] if path[0] in TOP_LEVEL_CMDLINE
                            else defs["block"])["properties"]
    spec: dict[str, Any] = {}
    for part in path[0 if path[0] in TOP_LEVEL_CMDLINE else 1:]:
        spec = node.get(part, {})
        node = spec.get("properties", {}) if isinstance(spec, dict) else {}
    if isinstance(spec, dict) and "$ref" in spec:
        spec = defs.get(spec["$ref"].rsplit("/", 1)[-1], {})
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "boolean":
        return value.lower() in ("1", "true", "yes", "on")
    if kind == "array" and not k3os:
        return [v for v in value.split(",") if v]
    return value


def cmdline(text: str) -> tuple[Source | None, dict[str, str]]:
    """(config, control) from /proc/cmdline: `osb.server_url=...` / `k3os.token=...` set
    block keys, `osb.install.device=` nested ones; mode and config_url are control. A key
    given twice: k3os.* makes a list (k3OS), osb.* keeps the last."""
    config: dict[str, Any] = {}
    control: dict[str, str] = {}
    top_keys = normalizer().top
    for m in TOKEN.finditer(text):
        key, sep, value = m.group(0).partition("=")
        value = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
        if not sep:
            value = "true"  # k3OS: a bare key path is true (k3os.install.silent)
        if key == "config_url" and sep:
            control["config_url"] = value
            continue
        prefix = next((p for p in CMDLINE_PREFIXES if key.startswith(p)), None)
        if prefix is None and top_keys.get(key) in TOP_LEVEL_FROM_CMDLINE:
            # k3OS reads every key path of the command line: top-level config keys
            # (hostname=, init_cmd="...") too; kernel parameters are no config keys
            old_top = config.get(key)
            config[key] = value if old_top is None else [
                *(old_top if isinstance(old_top, list) else [old_top]), value]
            continue
        path = key[len(prefix):].split(".") if prefix else []
        if not path or not all(path):
            continue  # not ours, or osb.=x, osb.a..b=x: no key to set
        if path[0] in CONTROL:
            if sep:
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
        typed = _typed(["k3os", *path], value, prefix == "k3os.")
        old = node.get(path[-1])
        if prefix == "k3os." and old is not None and not isinstance(typed, bool):
            typed = [*(old if isinstance(old, list) else [old]), typed]
        node[path[-1]] = typed
    return (parse_data(config, "cmdline") if config else None), control
