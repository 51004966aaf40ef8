"""The HTTP side of serve-pxe: a fixed table of files (nothing else of the disk is
reachable), GET and HEAD, and single byte ranges (RFC 9110 §14.1.2: `bytes=a-b`,
`bytes=a-`, `bytes=-n`). A request with several ranges, or one that does not parse, gets
the whole file, as §14.2 allows a server to ignore Range."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO

COPY = 1 << 20
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class Served:
    files: dict[str, Path]  # URL path -> file
    extra: dict[str, bytes] = field(default_factory=dict)  # URL path -> generated content


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) of a satisfiable single range; None: send everything; "416": the
    range starts beyond the end."""
    if header is None:
        return None
    m = RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # the last n bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n and size else "416"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignored, the whole file
    return (start, end) if start < size else "416"


class Handler(BaseHTTPRequestHandler):
    server_version = "osbuilder-serve-pxe"

    def __init__(self, *args: Any, served: Served, **kwargs: Any) -> None:
        self.served = served
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.respond(body=True)

    def do_HEAD(self) -> None:
        self.respond(body=False)

    def respond(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        data = self.served.extra.get(path)
        file = self.served.files.get(path)
        if data is None and file is None:
            self.send_error(404)
            return
        try:
            size = len(data) if data is not None else file.stat().st_size if file else 0
        except OSError:
            self.send_error(404)
            return
        rng = byte_range(self.headers.get("Range"), size)
        if rng == "416":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = rng if isinstance(rng, tuple) else (0, size - 1)
        self.send_response(206 if isinstance(rng, tuple) else 200)
        if isinstance(rng, tuple):
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "text/plain" if data is not None
                         else "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        if not body:
            return
        if data is not None:
            self.wfile.write(data[first:last + 1])
            return
        assert file is not None
        with file.open("rb") as f:
            copy_range(f, self.wfile, first, last - first + 1)

    def log_message(self, fmt: str, *args: Any) -> None:
        print(f"serve-pxe: {self.client_address[0]} {fmt % args}", file=sys.stderr, flush=True)


def copy_range(src: BinaryIO, dst: Any, offset: int, length: int) -> None:
    src.seek(offset)
    while length > 0:
        chunk = src.read(min(COPY, length))
        if not chunk:
            break
        dst.write(chunk)
        length -= len(chunk)
