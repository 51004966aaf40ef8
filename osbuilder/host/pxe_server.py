"""`osbuilder serve-pxe DIR`: the pxe format's files over HTTP, for a lab or a test.

Serves DIR as it is, plus /boot.ipxe, which sets where the files are (osb_url) and the
nodes' extra kernel options, then chains the build's iPXE script; with --config also
/config.yaml, passed to the nodes as osb.config_url. DHCP and TFTP stay with the
network's own server (README: dnsmasq), which points iPXE clients at /boot.ipxe.
"""

from __future__ import annotations

import socket
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from osbuilder.host.formats.pxe import ALLOW_HTTP
from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.loader import check_text

BOOT_SCRIPT = "/boot.ipxe"
CONFIG = "/config.yaml"


def find_script(folder: Path, name: str | None) -> str:
    if name is not None:
        if not (folder / name).is_file():
            raise OsbError(f"--script {name}: not in {folder}")
        return name
    scripts = sorted(folder.glob("*-pxe.ipxe"), key=lambda p: (p.stat().st_mtime, p.name))
    if not scripts:
        raise OsbError(f"{folder}: no *-pxe.ipxe script (build with --format pxe)")
    return scripts[-1].name


def boot_script(url: str, script: str, args: str) -> str:
    lines = ["#!ipxe", "# written by osbuilder serve-pxe", f"set osb_url {url}"]
    if args:
        lines.append(f"set osb_args {args}")
    lines.append(f"chain ${{osb_url}}/{script}")
    return "\n".join(lines) + "\n"


def default_url(bind: str, port: int) -> str:
    host = bind
    if bind in ("0.0.0.0", ""):
        # the address this host would use to reach others; no packet is sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect(("192.0.2.1", 9))
                host = s.getsockname()[0]
            except OSError:
                host = socket.gethostname()
    return f"http://{host}:{port}"


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, extra: dict[str, bytes], **kwargs: Any) -> None:
        self.extra = extra
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        body = self.extra.get(self.path)
        if body is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def list_directory(self, path: str | Any) -> None:
        self.send_error(404)  # a node asks for files by name; no listing

    def log_message(self, fmt: str, *args: Any) -> None:
        print(f"serve-pxe: {self.client_address[0]} {fmt % args}", file=sys.stderr, flush=True)


def serve_pxe(folder: Path, bind: str, port: int, url: str | None, script: str | None,
              config: Path | None, args: str) -> int:
    if not folder.is_dir():
        raise OsbError(f"serve-pxe {folder}: no such directory")
    script = find_script(folder, script)
    url = (url or default_url(bind, port)).rstrip("/")
    extra: dict[str, bytes] = {}
    if config is not None:
        try:
            text = config.read_text()
        except OSError as exc:
            raise OsbError(f"--config {config}: {exc.strerror}") from exc
        check_text(text, f"--config {config}")
        extra[CONFIG] = text.encode()
        allow = f" {ALLOW_HTTP}" if url.startswith("http://") else ""
        args = f"osb.config_url={url}{CONFIG}{allow} {args}".strip()
    extra[BOOT_SCRIPT] = boot_script(url, script, args).encode()
    try:
        server = ThreadingHTTPServer(
            (bind, port), partial(Handler, extra=extra, directory=str(folder)))
    except OSError as exc:
        raise OsbError(f"serve-pxe: cannot listen on {bind}:{port}: {exc.strerror}") from exc
    print(f"serving {folder} on {bind}:{server.server_address[1]}; nodes boot "
          f"{url}{BOOT_SCRIPT} ({script})", flush=True)
    print(f"  iPXE:    chain {url}{BOOT_SCRIPT}\n"
          f"  dnsmasq: dhcp-boot=tag:ipxe,{url}{BOOT_SCRIPT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
