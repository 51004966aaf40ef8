"""Downloads a node config asks for (config_url, manifests, air-gap images): https unless
the entry allows http, a size cap and a timeout each, and files put in place only once
complete and checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import fsync_dir
from osbuilder.shared.nodeconfig.limits import URL_TIMEOUT_S
from osbuilder.shared.nodeconfig.model import Url

CHUNK = 1 << 20


def _open(url: Url, timeout: float) -> object:
    if not url.url.startswith("https://") and not (url.allow_http and
                                                    url.url.startswith("http://")):
        raise OsbError(f"{url.url}: refused, only https (or http where the config allows "
                       "it with allow_http: true)")
    import requests  # here, not at the top: `boot` must not pay for it

    try:
        resp = requests.get(url.url, timeout=timeout, stream=True)
    except requests.RequestException as exc:
        raise OsbError(f"{url.url}: {type(exc).__name__}") from None
    if resp.status_code != 200:
        resp.close()
        raise OsbError(f"{url.url}: HTTP {resp.status_code}")
    return resp


def fetch_bytes(url: Url, limit: int, timeout: float = URL_TIMEOUT_S) -> bytes:
    """The whole answer, or an error once it passes `limit` bytes."""
    import requests

    resp = _open(url, timeout)
    assert isinstance(resp, requests.Response)
    out = bytearray()
    try:
        with resp:
            for chunk in resp.iter_content(CHUNK):
                out += chunk
                if len(out) > limit:
                    raise OsbError(f"{url.url}: more than {limit} bytes, refused")
    except requests.RequestException as exc:
        raise OsbError(f"{url.url}: {type(exc).__name__} while reading") from None
    return bytes(out)


def fetch_file(url: Url, dest: Path, sha256: str, limit: int,
               timeout: float = URL_TIMEOUT_S) -> None:
    """Download to `.<name>.part` beside dest, synced; checked against sha256; only then
    renamed into place (and the folder synced). A bad download leaves nothing behind."""
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    digest, size = hashlib.sha256(), 0
    try:
        resp = _open(url, timeout)
        assert isinstance(resp, requests.Response)
        with resp, part.open("wb") as f:
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise OsbError(f"{url.url}: more than {limit} bytes, refused")
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if digest.hexdigest() != sha256.lower():
            raise OsbError(f"{url.url}: sha256 {digest.hexdigest()} is not the configured "
                           f"{sha256.lower()}")
        os.replace(part, dest)
        fsync_dir(dest.parent)
    except requests.RequestException as exc:
        raise OsbError(f"{url.url}: {type(exc).__name__} while reading") from None
    finally:
        part.unlink(missing_ok=True)
