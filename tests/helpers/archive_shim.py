"""TEST DOUBLE of a Debian archive's index, for the one case where this build machine's
archive is inconsistent: trixie's armhf Packages.xz here is an older snapshot than the
InRelease beside it (sizes and hashes differ), so apt refuses it and no armhf rootfs can be
built. The pool it names is still served. This shim serves that Packages.xz with a Release
file written for it (unsigned: the mirror line says [trusted=yes]) and redirects every pool/
request to the real archive, so the packages themselves are Debian's, checked by apt
against the index. Used only by the rpi-armhf legs (tests/e2e/test_rpi_armhf.py,
tests/integration/test_build_arm_boards.py); a user's build reads the archive directly."""

from __future__ import annotations

import email.utils
import hashlib
import lzma
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from osbuilder.host.boards import BOARDS_DIR, load_board

UPSTREAM = "http://deb.debian.org/debian"
# fixed: the port is part of the mirror line, and so of the rootfs cache key
PORT = 18089


def write_index(root: Path, suite: str, arch: str, components: tuple[str, ...]) -> None:
    dists = root / "dists" / suite
    sums = []
    for comp in components:
        rel = f"{comp}/binary-{arch}/Packages.xz"
        dest = dists / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{UPSTREAM}/dists/{suite}/{rel}", timeout=300) as r:
            dest.write_bytes(r.read())
        packed = dest.read_bytes()
        # apt looks an index up by its uncompressed name, then fetches a compressed one
        for name, data in ((rel, packed), (rel.removesuffix(".xz"), lzma.decompress(packed))):
            sums.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (dists / "Release").write_text(
        f"Origin: Debian\nLabel: Debian\nSuite: {suite}\nCodename: {suite}\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\n"
        f"Architectures: {arch}\nComponents: {' '.join(components)}\n"
        "No-Support-for-Architecture-all: Packages\nSHA256:\n" + "\n".join(sums) + "\n")


@contextmanager
def serve_archive_shim(tmp: Path, suite: str, arch: str,
                       components: tuple[str, ...]) -> Iterator[str]:
    """Yields the mirror line a board file's `mirror:` takes."""
    write_index(tmp, suite, arch, components)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.removeprefix("/debian/")
            if path.startswith("pool/") and ".." not in path:
                self.send_response(302)
                self.send_header("Location", f"{UPSTREAM}/{path}")
                self.end_headers()
                return
            f = tmp / path
            if ".." in path or not f.is_file():
                self.send_error(404)  # InRelease, Release.gpg, translations: none here
                return
            data = f.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    try:
        server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    except OSError as exc:
        raise RuntimeError(f"archive shim: cannot listen on 127.0.0.1:{PORT}: {exc}") from exc
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield (f"deb [trusted=yes] http://127.0.0.1:{PORT}/debian {suite} "
               f"{' '.join(components)}")
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def shim_board_file(name: str, tmp: Path) -> Iterator[Path]:
    """The board's file with its mirror pointed at the shim, for `--board FILE`."""
    board = load_board(name)
    with serve_archive_shim(tmp / "archive", board.suite, board.arch,
                            board.components) as mirror:
        raw = yaml.safe_load((BOARDS_DIR / f"{name}.yaml").read_text())
        path = tmp / f"{name}.yaml"  # a board file's name must be its board's
        path.write_text(yaml.safe_dump({**raw, "mirror": mirror}))
        yield path
