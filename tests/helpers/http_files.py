"""A static file server on 127.0.0.1 that honours Range requests (bundle downloads resume
with them) and records what was asked. Guests reach it through QEMU's guestfwd only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 16


@dataclass
class Served:
    root: Path
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header)
    cut_after: int | None = None  # drop the connection after this many bytes of a body


def _handler(s: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range", "")
            s.requests.append((self.path, rng))
            f = s.root / self.path.lstrip("/")
            if not f.is_file() or ".." in self.path:
                self.send_error(404)
                return
            size = f.stat().st_size
            start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
            if start >= size:
                self.send_error(416)
                return
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            sent = 0
            with f.open("rb") as fh:
                fh.seek(start)
                while block := fh.read(CHUNK):
                    if s.cut_after is not None and sent >= s.cut_after:
                        s.cut_after = None  # one cut only: the retry gets the rest
                        return
                    try:
                        self.wfile.write(block)
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client gave up (e.g. not enough space): its call
                    sent += len(block)

    return Handler


@contextmanager
def serve_files(root: Path) -> Iterator[Served]:
    served = Served(root, 0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    served.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
