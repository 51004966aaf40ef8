"""HTTP downloads into a cache: streamed to a .part file, verified, renamed at the end."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import requests

from osbuilder.host.progress import Progress
from osbuilder.shared.errors import OsbError

CHUNK = 1 << 20
TIMEOUT_S = 30.0


class NetworkError(OsbError):
    """The server could not be reached (as opposed to answering with an error)."""


ZEROS = memoryview(bytes(CHUNK))


def sha256_file(path: Path) -> str:
    """sha256 of a file; the holes of a sparse one (an image's empty slot B, most of a
    4 GiB disk) are hashed from a zero buffer instead of read: a config-only rebuild
    spends most of its seconds hashing the image."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole up to the end
                data = size
            for off in range(pos, data, CHUNK):
                h.update(ZEROS[:min(CHUNK, data - off)])
            if data >= size:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            f.seek(data)
            while data < hole:
                block = f.read(min(CHUNK, hole - data))
                if not block:  # the file shrank under us: hash what is there
                    return h.hexdigest()
                h.update(block)
                data += len(block)
            pos = hole
    return h.hexdigest()


def http_get(url: str, *, timeout: float | None = None, **kwargs: object) -> requests.Response:
    timeout = timeout or TIMEOUT_S
    try:
        resp = requests.get(url, timeout=timeout, **kwargs)  # type: ignore[arg-type]
    except requests.Timeout as exc:
        raise NetworkError(f"timed out after {timeout:.0f} s fetching {url}") from exc
    except requests.ConnectionError as exc:
        raise NetworkError(f"cannot reach {url}: {exc.__class__.__name__}") from exc
    if resp.status_code == 404:
        raise OsbError(f"not found (HTTP 404): {url}")
    if resp.status_code >= 400:
        raise OsbError(f"HTTP {resp.status_code} fetching {url}")
    return resp


def download(
    url: str, dest: Path, progress: Progress, *, sha256: str | None = None,
    timeout: float | None = None,
) -> Path:
    """Fetch url to dest; a failed or mismatching download leaves nothing at dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resp = http_get(url, timeout=timeout, stream=True)
    total = int(resp.headers.get("content-length", 0)) or None
    meter = progress.download(dest.name, total)
    h = hashlib.sha256()
    try:
        with part.open("wb") as f:
            for chunk in resp.iter_content(CHUNK):
                f.write(chunk)
                h.update(chunk)
                meter.update(len(chunk))
        meter.finish()
        if sha256 is not None and h.hexdigest() != sha256:
            raise OsbError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}"
            )
        os.replace(part, dest)
    except requests.RequestException as exc:
        raise NetworkError(f"download of {url} interrupted: {exc.__class__.__name__}") from exc
    finally:
        part.unlink(missing_ok=True)
    return dest
