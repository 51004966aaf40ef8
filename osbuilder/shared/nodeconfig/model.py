"""The node config as typed, frozen dataclasses: parsed once from the merged, validated
sources; appliers only ever see these. Defaults live in config.schema.json."""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.nodeconfig.k3s_args import split_role
from osbuilder.shared.nodeconfig.limits import MAX_WRITE_FILE_BYTES, MAX_WRITE_FILES_BYTES
from osbuilder.shared.schema import load_schema, validate, with_defaults

SCHEMA = "config.schema.json"
BLOCK_KEYS = ("k3os", "osbuilder")
Command = tuple[str, ...] | str


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: bytes
    owner: str
    permissions: int


@dataclass(frozen=True)
class Wifi:
    name: str
    passphrase: str | None


@dataclass(frozen=True)
class Interface:
    match: str
    dhcp: bool
    addresses: tuple[str, ...]
    gateway: str | None
    dns: tuple[str, ...]


@dataclass(frozen=True)
class Url:
    """A download the node makes: https, or plain http where the config allowed it."""

    url: str
    allow_http: bool = False


@dataclass(frozen=True)
class Manifest:
    name: str
    content: str | None
    url: Url | None


@dataclass(frozen=True)
class AirgapImage:
    url: Url
    sha256: str


@dataclass(frozen=True)
class K3s:
    role: str  # "server" or "agent"
    role_from_args: bool  # k3s_args began with the role word (k3OS)
    server_url: str | None
    token: str | None
    labels: tuple[tuple[str, str], ...]
    taints: tuple[str, ...]
    args: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    datastore_endpoint: str | None
    cluster_init: bool
    tls_san: tuple[str, ...]
    node_ip: str | None
    flannel_backend: str | None
    disable: tuple[str, ...]
    registries: dict[str, Any] | None
    manifests: tuple[Manifest, ...]
    airgap_images: tuple[AirgapImage, ...]


@dataclass(frozen=True)
class Install:
    device: str | None
    force_efi: bool
    silent: bool
    no_format: bool
    config_url: Url | None
    power_off: bool
    force: bool


@dataclass(frozen=True)
class HealthCheck:
    name: str
    command: Command | None
    url: str | None


@dataclass(frozen=True)
class Upgrade:
    health_timeout: int
    require_node_ready: bool
    health_checks: tuple[HealthCheck, ...]


@dataclass(frozen=True)
class NodeConfig:
    hostname: str | None
    config_url: Url | None
    ssh_authorized_keys: tuple[str, ...]
    write_files: tuple[WriteFile, ...]
    init_cmd: tuple[Command, ...]
    boot_cmd: tuple[Command, ...]
    run_cmd: tuple[Command, ...]
    data_sources: tuple[str, ...]
    modules: tuple[str, ...]
    sysctl: tuple[tuple[str, str], ...]
    ntp_servers: tuple[str, ...]
    dns_nameservers: tuple[str, ...]
    wifi: tuple[Wifi, ...]
    network: tuple[Interface, ...]
    password: str | None
    root_login: bool
    k3s: K3s
    install: Install
    upgrade: Upgrade


def decode_content(content: str, encoding: str, where: str = "write_files[0]") -> bytes:
    """The bytes a write_files entry stands for; gzip is inflated no further than the
    limit, so a small bomb cannot fill the node's memory."""
    data = content.encode()
    if "b64" in encoding or "base64" in encoding:
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise ConfigError(f"{where}.content", f"not valid base64 (encoding {encoding})"
                              ) from None
    elif encoding.startswith("gz"):
        raise ConfigError(f"{where}.encoding", f"{encoding}: gzip data cannot be YAML text; "
                          "give the content as !!binary or as base64 (encoding gz+b64)")
    if len(data) > MAX_WRITE_FILE_BYTES:
        raise ConfigError(f"{where}.content", f"more than {MAX_WRITE_FILE_BYTES} bytes")
    if encoding.startswith("gz"):
        inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip header expected
        try:
            data = inflate.decompress(data, MAX_WRITE_FILE_BYTES + 1)
        except zlib.error as exc:
            raise ConfigError(f"{where}.content", f"not gzip data ({exc})") from None
        if len(data) > MAX_WRITE_FILE_BYTES or inflate.unconsumed_tail:
            raise ConfigError(f"{where}.content",
                              f"inflates to more than {MAX_WRITE_FILE_BYTES} bytes")
        if not inflate.eof:
            raise ConfigError(f"{where}.content", "gzip data cut short")
    return data


def _write_files(entries: list[dict[str, Any]], schema: dict[str, Any]
                 ) -> tuple[WriteFile, ...]:
    out, total = [], 0
    for i, raw in enumerate(entries):
        w = with_defaults(raw, schema)
        content = decode_content(w["content"], w["encoding"], f"write_files[{i}]")
        total += len(content)
        if total > MAX_WRITE_FILES_BYTES:
            raise ConfigError("write_files", f"more than {MAX_WRITE_FILES_BYTES} bytes in all")
        out.append(WriteFile(path=w["path"], content=content, owner=w["owner"],
                             permissions=int(w["permissions"], 8)))
    return tuple(out)


def _str_map(m: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    def text(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return tuple(sorted((k, text(v)) for k, v in (m or {}).items()))


def url_of(value: Any, key: str) -> Url | None:
    """A URL entry as the schema allows it (text, or {url, allow_http}); plain http only
    where the entry allows it."""
    if value is None:
        return None
    url = Url(value, False) if isinstance(value, str) else Url(value["url"],
                                                                bool(value.get("allow_http")))
    if url.url.startswith("http://") and not url.allow_http:
        raise ConfigError(key, "plain http is refused (anyone on the path could change what "
                               "it brings): use https, or allow_http: true for this entry")
    return url


def _command(c: str | list[str], key: str = "command") -> Command:
    if any("\0" in part for part in ([c] if isinstance(c, str) else c)):
        raise ConfigError(key, "a command cannot contain a NUL character")
    return c if isinstance(c, str) else tuple(c)


def _commands(top: dict[str, Any], key: str) -> tuple[Command, ...]:
    return tuple(_command(c, f"{key}[{i}]") for i, c in enumerate(top.get(key, [])))


def block_of(merged: dict[str, Any]) -> dict[str, Any]:
    """The k3os:/osbuilder: block (both spellings merged, osbuilder: winning). Read before
    validation too (config_url), so a block that is not a mapping counts as empty here; the
    schema names it as an error afterwards."""
    out: dict[str, Any] = {}
    for key in BLOCK_KEYS:
        block = merged.get(key)
        if isinstance(block, dict):
            out.update(block)
    return out


def parse(merged: dict[str, Any], source: str = "config", validated: bool = False
          ) -> NodeConfig:
    """Validate a merged config (unless the caller already did) and turn it into a
    NodeConfig (raises OsbError)."""
    if not validated:
        validate(merged, SCHEMA, source)
    schema = load_schema(SCHEMA)
    top: dict[str, Any] = with_defaults(merged, schema["$defs"]["config"])
    b: dict[str, Any] = with_defaults(block_of(merged), schema["$defs"]["block"])
    word, args = split_role(tuple(b.get("k3s_args", [])))
    role = word or ("agent" if b.get("server_url") else "server")
    ins = b.get("install", {})
    up = with_defaults(b.get("upgrade", {}),
                       schema["$defs"]["block"]["properties"]["upgrade"])
    return NodeConfig(
        hostname=top.get("hostname"),
        config_url=url_of(b.get("config_url"), "k3os.config_url"),
        ssh_authorized_keys=tuple(top.get("ssh_authorized_keys", [])),
        write_files=_write_files(top.get("write_files", []),
                                 schema["$defs"]["config"]["properties"]["write_files"]["items"]),
        init_cmd=_commands(top, "init_cmd"),
        boot_cmd=_commands(top, "boot_cmd"),
        run_cmd=_commands(top, "run_cmd"),
        data_sources=tuple(b.get("data_sources", [])),
        modules=tuple(b.get("modules", [])),
        sysctl=_str_map(b.get("sysctl")),
        ntp_servers=tuple(b.get("ntp_servers", [])),
        dns_nameservers=tuple(b.get("dns_nameservers", [])),
        wifi=tuple(Wifi(w["name"], w.get("passphrase")) for w in b.get("wifi", [])),
        network=tuple(
            Interface(match=name, dhcp=i.get("dhcp", not i.get("addresses")),
                      addresses=tuple(i.get("addresses", [])),
                      gateway=i.get("gateway"), dns=tuple(i.get("dns", [])))
            for name, i in sorted(b.get("network", {}).items())
        ),
        password=b.get("password"),
        root_login=b["root_login"],
        k3s=K3s(
            role=role, role_from_args=word is not None, server_url=b.get("server_url"),
            token=b.get("token"),
            labels=_str_map(b.get("labels")), taints=tuple(b.get("taints", [])), args=args,
            environment=_str_map(b.get("environment")),
            datastore_endpoint=b.get("datastore_endpoint"),
            cluster_init=bool(b.get("cluster_init", False)),
            tls_san=tuple(b.get("tls_san", [])), node_ip=b.get("node_ip"),
            flannel_backend=b.get("flannel_backend"), disable=tuple(b.get("disable", [])),
            registries=b.get("registries"),
            manifests=tuple(
                Manifest(m["name"], m.get("content"),
                         url_of({"url": m["url"], "allow_http": m.get("allow_http")}
                                if "url" in m else None, f"k3os.manifests[{i}].url"))
                for i, m in enumerate(b.get("manifests", []))),
            airgap_images=tuple(
                AirgapImage(url_of({"url": a["url"], "allow_http": a.get("allow_http")},
                                   f"k3os.airgap_images[{i}].url") or Url(""),
                            a["sha256"].lower())
                for i, a in enumerate(b.get("airgap_images", []))),
        ),
        install=Install(
            device=ins.get("device"), force_efi=bool(ins.get("force_efi")),
            silent=bool(ins.get("silent")), no_format=bool(ins.get("no_format")),
            config_url=url_of(ins.get("config_url"), "k3os.install.config_url"),
            power_off=bool(ins.get("power_off")),
            force=bool(ins.get("force")),
        ),
        upgrade=Upgrade(
            health_timeout=up["health_timeout"], require_node_ready=up["require_node_ready"],
            health_checks=tuple(
                HealthCheck(name=h.get("name") or h.get("url") or f"check {i + 1}",
                            command=(_command(h["command"], f"k3os.upgrade.health_checks[{i}]")
                                     if "command" in h else None),
                            url=h.get("url"))
                for i, h in enumerate(up["health_checks"])),
        ),
    )
