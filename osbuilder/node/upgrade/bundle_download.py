"""Bundle download to the data partition: resumable, with progress and a free-space check."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from osbuilder.shared.errors import OsbError

CHUNK = 1 << 20
# room left for the journal, k3s and the RAUC status after the bundle landed
SPARE_BYTES = 256 << 20
TIMEOUT_S = 30.0


def fetch_bundle(url: str, dest: Path, say: Callable[[str], None]) -> Path:
    """Download url to dest. A .part file from an interrupted run is resumed with a Range
    request; the bundle appears at dest only when complete."""
    import requests  # in the image from python3-requests; imported late: costs RSS at boot

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise OsbError(f"cannot fetch {url}: {exc.__class__.__name__}: {exc}") from exc
    if resp.status_code == 416 and have:  # .part already complete
        os.replace(part, dest)
        return dest
    if resp.status_code >= 400:
        raise OsbError(f"HTTP {resp.status_code} fetching {url}")
    if resp.status_code != 206:  # server ignored the Range: start over
        have = 0
    left = int(resp.headers.get("content-length") or 0)
    total = have + left if left else None
    free = shutil.disk_usage(dest.parent).free
    if left and left + SPARE_BYTES > free:
        raise OsbError(f"not enough space on {dest.parent} for the bundle: {left >> 20} MiB "
                       f"needed plus {SPARE_BYTES >> 20} MiB spare, {free >> 20} MiB free")
    say(f"downloading {url}" + (f" (resuming at {have >> 20} MiB)" if have else ""))
    t0 = last = time.monotonic()
    got = have
    try:
        with part.open("ab" if have else "wb") as f:
            for chunk in resp.iter_content(CHUNK):
                f.write(chunk)
                got += len(chunk)
                now = time.monotonic()
                if now - last >= 2 or (total and got == total):
                    last = now
                    rate = (got - have) / max(now - t0, 1e-3)
                    eta = f", ETA {(total - got) / rate:.0f} s" if total and rate else ""
                    pct = f"{100 * got / total:.0f}% " if total else ""
                    say(f"downloaded {pct}{got / 2**20:.1f} MiB, {rate / 2**20:.1f} MiB/s{eta}")
            f.flush()
            os.fsync(f.fileno())
    except requests.RequestException as exc:
        raise OsbError(f"download of {url} interrupted after {got >> 20} MiB "
                       f"(run the upgrade again to resume): {exc.__class__.__name__}") from exc
    if total and got != total:
        raise OsbError(f"download of {url} stopped at {got} of {total} bytes "
                       "(run the upgrade again to resume)")
    os.replace(part, dest)
    return dest
