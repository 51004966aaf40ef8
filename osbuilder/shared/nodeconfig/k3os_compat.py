"""k3OS config files unchanged: the spellings and coercions k3OS's own decoding accepted,
applied to each source before it is merged, and unknown keys set aside with a warning.

k3OS (rancher/k3os@8cdfdf2 pkg/config/read.go) decodes each source through rancher/mapper:
- FuzzyNames (pkg/config/rename.go): every field answers to its JSON tag (camelCase), the
  snake_case of it, both lower-cased, the same for the name without a trailing "s" or
  "es", and Wi-Fi's passphrase also to `pass` and `password`; encoding/json then matches
  the tag case-insensitively (`HOSTNAME`, `serverURL`).
- coerce.go: a string where a list of strings is expected becomes a one-item list; a
  string where a boolean is expected is true only for "true"; the values of string maps
  (labels, sysctls, environment) become text (a list: its first item, null: "").
- null is a field left unset (`data_sources:` with nothing after it).
- Unknown keys are ignored silently; here each is named in a warning (and with strict
  checking, `osbuilder validate-config --strict`, refused).
The names below are k3OS's JSON tags, each mapped to osbuilder's key of the same meaning.
"""

from __future__ import annotations

from typing import Any

from osbuilder.shared.schema import load_schema

TOP = {"sshAuthorizedKeys": "ssh_authorized_keys", "writeFiles": "write_files",
       "hostname": "hostname", "k3os": "k3os", "runCmd": "run_cmd", "bootCmd": "boot_cmd",
       "initCmd": "init_cmd"}
BLOCK = {"dataSources": "data_sources", "modules": "modules", "sysctls": "sysctl",
         "ntpServers": "ntp_servers", "dnsNameservers": "dns_nameservers", "wifi": "wifi",
         "password": "password", "serverUrl": "server_url", "token": "token",
         "labels": "labels", "k3sArgs": "k3s_args", "environment": "environment",
         "taints": "taints", "install": "install"}
WIFI = {"name": "name", "passphrase": "passphrase"}
INSTALL = {"forceEfi": "force_efi", "device": "device", "configUrl": "config_url",
           "silent": "silent", "isoUrl": "iso_url", "powerOff": "power_off",
           "noFormat": "no_format", "debug": "debug", "tty": "tty"}
FILE = {"encoding": "encoding", "content": "content", "owner": "owner", "path": "path",
        "permissions": "permissions"}


def _snake(name: str) -> str:
    """rancher/mapper convert.ToYAMLKey: camelCase -> snake_case (runs of capitals kept)."""
    out: list[str] = []
    capital = False
    for i, c in enumerate(name):
        if i == 0:
            capital = c.isupper()
            out.append(c.lower())
        elif c.isupper():
            out.append(c.lower() if capital else "_" + c.lower())
        else:
            capital = False
            out.append(c)
    return "".join(out)


def spellings(tags: dict[str, str], extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Every spelling FuzzyNames accepts -> osbuilder's key; our own key names included."""
    names: dict[str, str] = {}

    def add(spelling: str, key: str) -> None:
        for s in (spelling, spelling.lower(), _snake(spelling), _snake(spelling).lower()):
            names.setdefault(s, key)

    for tag, key in tags.items():
        add(tag, key)
        if tag.endswith("s") and len(tag) > 1:
            add(tag[:-1], key)
        if tag.endswith("es") and len(tag) > 2:
            add(tag[:-2], key)
    for key in (*tags.values(), *extra):
        names[key] = key  # osbuilder's own spelling always means itself
    return names


def _props(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    base = schema["$defs"][ref[8:]] if ref.startswith("#/$defs/") else {}
    return {**base.get("properties", {}), **node.get("properties", {})}


class Normalizer:
    def __init__(self) -> None:
        s = load_schema("config.schema.json")
        self.schema = s
        config = s["$defs"]["config"]
        block = s["$defs"]["block"]
        bp = block["properties"]
        self.top = spellings(TOP, (*config["properties"], "osbuilder", "nodes"))
        self.block = spellings(BLOCK, tuple(bp))
        self.wifi = {**spellings(WIFI), "pass": "passphrase", "password": "passphrase"}
        self.install = spellings(INSTALL, tuple(bp["install"]["properties"]))
        self.file = spellings(FILE)

    def source(self, data: dict[str, Any], where: str = "") -> tuple[dict[str, Any], list[str]]:
        """One source as osbuilder reads it, and a warning per key it set aside."""
        warnings: list[str] = []
        out = self._object(data, self.top, self._config_schema(), where, warnings)
        return out, warnings

    def _config_schema(self) -> dict[str, Any]:
        props = _props(self.schema, self.schema)
        return {"properties": {**props, **self.schema["properties"]}}

    def _object(self, data: dict[str, Any], names: dict[str, str], spec: dict[str, Any],
                where: str, warnings: list[str]) -> dict[str, Any]:
        props = _props(self.schema, spec)
        out: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = names.get(raw_key) or names.get(raw_key.lower())
            at = f"{where}.{raw_key}" if where else raw_key
            if key is None or key not in props:
                warnings.append(f"{at}: unknown key")
                continue
            if value is None:
                continue  # k3OS: null leaves a setting unset
            if key in out and raw_key != key:
                warnings.append(f"{at}: another spelling of {key}, ignored")
                continue  # osbuilder's own spelling wins over another in the same file
            out[key] = self._value(key, value, props[key], f"{where}.{key}" if where else key,
                                   warnings)
        return out

    def _value(self, key: str, value: Any, spec: dict[str, Any], where: str,
               warnings: list[str]) -> Any:
        spec = self._resolve(spec)
        if key in ("k3os", "osbuilder") and isinstance(value, dict):
            return self._object(value, self.block, self.schema["$defs"]["block"], where,
                                warnings)
        if key == "install" and isinstance(value, dict):
            return self._object(value, self.install, spec, where, warnings)
        if key == "wifi" and isinstance(value, list):
            return [self._object(v, self.wifi, spec["items"], f"{where}[{i}]", warnings)
                    if isinstance(v, dict) else v for i, v in enumerate(value)]
        if key == "write_files" and isinstance(value, list):
            return [self._object(v, self.file, spec["items"], f"{where}[{i}]", warnings)
                    if isinstance(v, dict) else v for i, v in enumerate(value)]
        if key == "nodes" and isinstance(value, list):
            return [self._node_entry(v, f"{where}[{i}]", warnings) if isinstance(v, dict)
                    else v for i, v in enumerate(value)]
        return coerce(value, spec, self._resolve(spec.get("items", {})))

    def _node_entry(self, entry: dict[str, Any], where: str, warnings: list[str]
                    ) -> dict[str, Any]:
        body = {k: v for k, v in entry.items() if k != "match"}
        out = self._object(body, self.top, self._config_schema(), where, warnings)
        out.pop("nodes", None)
        return {"match": entry["match"], **out} if "match" in entry else out

    def _resolve(self, spec: dict[str, Any]) -> dict[str, Any]:
        ref = spec.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return {**self.schema["$defs"][ref[8:]], **{k: v for k, v in spec.items()
                                                         if k != "$ref"}}
        return spec


def coerce(value: Any, spec: dict[str, Any], items: dict[str, Any]) -> Any:
    """k3OS's coercions (rancher/k3os pkg/config/coerce.go) for one value of schema `spec`
    (`items`: its list items' schema, resolved)."""
    kind = spec.get("type")
    if kind == "array" and isinstance(value, str) and _string_items(items):
        return [value]
    if kind == "boolean" and isinstance(value, str):
        return value == "true"
    values = spec.get("additionalProperties")
    if kind == "object" and isinstance(value, dict) and isinstance(values, dict) \
            and "string" in _types(values):
        return {k: _text(v) for k, v in value.items()}
    return value


def _types(spec: dict[str, Any]) -> list[str]:
    kind = spec.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def _string_items(items: dict[str, Any]) -> bool:
    """Items that may be text: strings, or commands (text or an argv list)."""
    return items.get("type") == "string" or any(
        o.get("type") == "string" for o in items.get("oneOf", []))


def _text(v: Any) -> Any:
    """rancher/mapper convert.ToString of a map value: text, as k3s and sysctl read it."""
    if isinstance(v, list):
        v = v[0] if v else ""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    return v  # a map: the schema names it
