"""`osbuilder serve-pxe DIR`: one build's pxe files over HTTP, for a lab or a test.

Serves exactly the files of one image (`<name>-pxe.*` of the chosen iPXE script: no
other file of DIR, no hidden file, no symlink that leads out of DIR), plus /boot.ipxe,
which sets where the files are (osb_url) and the nodes' extra kernel options, then
chains the build's script; with --config also /config.yaml, passed to the nodes as
osb.config_url. Byte ranges (RFC 9110 §14) are served, so a client can resume.
Listens on 127.0.0.1 unless told an address; never tells the network to boot from a
loopback address. DHCP and TFTP stay with the network's own server (docs/delivery.md:
dnsmasq), which points iPXE clients at /boot.ipxe.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from osbuilder.host.formats.pxe import ALLOW_HTTP
from osbuilder.host.pxe_http import Handler, Served
from osbuilder.shared.errors import OsbError, UsageError
from osbuilder.shared.nodeconfig.loader import check_text

BOOT_SCRIPT = "/boot.ipxe"
CONFIG = "/config.yaml"


def find_script(folder: Path, name: str | None) -> str:
    if name is not None:
        if "/" in name or name.startswith(".") or not name.endswith(".ipxe"):
            raise UsageError(f"--script {name}: the file name of a .ipxe script in {folder}")
        if not (folder / name).is_file():
            raise OsbError(f"--script {name}: not in {folder}")
        return name
    scripts = sorted(folder.glob("*-pxe.ipxe"), key=lambda p: (p.stat().st_mtime, p.name))
    if not scripts:
        raise OsbError(f"{folder}: no *-pxe.ipxe script (build with --format pxe)")
    return scripts[-1].name


def image_files(folder: Path, script: str) -> dict[str, Path]:
    """URL path -> file, for the build whose script this is: `<stem>.*` files only."""
    stem = script.removesuffix(".ipxe")
    root = folder.resolve()
    files = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.name.startswith(stem + "."):
            continue
        real = f.resolve()
        if real.parent != root or not real.is_file():
            print(f"serve-pxe: not serving {f.name}: it leads out of {folder}",
                  file=sys.stderr)
            continue
        files[f"/{f.name}"] = real
    return files


def boot_script(url: str, script: str, args: str) -> str:
    lines = ["#!ipxe", "# written by osbuilder serve-pxe", f"set osb_url {url}"]
    if args:
        lines.append(f"set osb_args {args}")
    lines.append(f"chain ${{osb_url}}/{script}")
    return "\n".join(lines) + "\n"


def is_loopback(host: str) -> bool:
    """A name or address that means "this machine" (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def outward_address() -> str | None:
    """The address this host would use to reach others; no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return None


def advertised_url(bind: str, port: int, url: str | None) -> str:
    """The URL nodes are told; refuses a loopback one when serving the network."""
    local = is_loopback(bind)
    if url is not None:
        host = urlsplit(url).hostname or ""
        if urlsplit(url).scheme not in ("http", "https") or not host:
            raise UsageError(f"--url {url}: expected http://HOST[:PORT]")
        if not local and is_loopback(host):
            raise UsageError(f"--url {url} is a loopback address: nodes on the network would "
                             "ask themselves; give an address they reach this machine by")
        return url.rstrip("/")
    if local:
        return f"http://{url_host(bind)}:{port}"
    host = bind
    if _is_ip(bind) and ipaddress.ip_address(bind).is_unspecified:
        found = outward_address()
        if found is None or is_loopback(found):
            raise UsageError(f"--bind {bind}: cannot tell which address nodes reach this "
                             "machine by (no route out): pass --url http://ADDRESS:PORT")
        host = found
    return f"http://{url_host(host)}:{port}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def secrets_in(text: str, source: str) -> list[str]:
    """Key paths of the secret values a config holds (the schema's x-osb-secret keys)."""
    from osbuilder.shared.nodeconfig.model import SCHEMA
    from osbuilder.shared.nodeconfig.source_text import parse_source
    from osbuilder.shared.schema import secret_keys

    secret = secret_keys(SCHEMA)
    found: list[str] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                p = f"{path}.{k}" if path else str(k)
                if k in secret and v not in (None, "", [], {}):
                    found.append(p)
                else:
                    walk(v, p)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(parse_source(text.encode(), source).data, "")
    return found


def serve_pxe(folder: Path, bind: str, port: int, url: str | None, script: str | None,
              config: Path | None, args: str) -> int:
    if not folder.is_dir():
        raise OsbError(f"serve-pxe {folder}: no such directory")
    script = find_script(folder, script)
    files = image_files(folder, script)
    configs: dict[str, str] = {}
    for path, f in files.items():
        if path.endswith(".config.yaml"):
            configs[path] = f.read_text(errors="replace")
    if config is not None:
        try:
            text = config.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise OsbError(f"--config {config}: cannot read it ({exc})") from exc
        check_text(text, f"--config {config}")
        configs[CONFIG] = text
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    served = Served(files)
    try:
        server = server_class((bind, port), partial(Handler, served=served))
    except (OSError, OverflowError) as exc:
        raise OsbError(f"serve-pxe: cannot listen on {bind}:{port}: {exc}") from exc
    try:
        base = advertised_url(bind, server.server_address[1], url)
        for path, text in configs.items():
            found = secrets_in(text, path)
            if found and base.startswith("http://"):
                print(f"serve-pxe: warning: {path.lstrip('/')} holds secrets "
                      f"({', '.join(found)}) and is served over plain HTTP: anyone on the "
                      "network can read it. Prefer a crypt hash for the password and an "
                      "https --url (a TLS proxy in front), or keep secrets out of it.",
                      file=sys.stderr, flush=True)
        if config is not None:
            served.extra[CONFIG] = configs[CONFIG].encode()
            allow = f" {ALLOW_HTTP}" if base.startswith("http://") else ""
            args = f"osb.config_url={base}{CONFIG}{allow} {args}".strip()
        served.extra[BOOT_SCRIPT] = boot_script(base, script, args).encode()
        where = "this machine only" if is_loopback(bind) else "the network"
        print(f"serving {len(files)} files of {script.removesuffix('.ipxe')} on "
              f"{bind}:{server.server_address[1]}; nodes boot {base}{BOOT_SCRIPT} ({where})",
              flush=True)
        print(f"  iPXE:    chain {base}{BOOT_SCRIPT}\n"
              f"  dnsmasq: dhcp-boot=tag:ipxe,{base}{BOOT_SCRIPT}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
