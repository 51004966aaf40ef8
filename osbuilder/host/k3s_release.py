"""Find, fetch and verify the k3s binary for a board: by version, channel, or local dir.

Release layout (github.com/k3s-io/k3s/releases/download/<version>/):
  k3s, k3s-arm64, k3s-armhf, sha256sum-{amd64,arm64,arm}.txt,
  k3s-airgap-images-<arch>.tar.zst (optional, for air-gapped nodes)
Channels: GET <channel server>/<name> answers with a redirect to .../releases/tag/<version>.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from osbuilder.host.boards import Board
from osbuilder.host.download import NetworkError, download, http_get, sha256_file
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import OsbError

CHANNEL_URL = "https://update.k3s.io/v1-release/channels"
RELEASE_URL = "https://github.com/k3s-io/k3s/releases/download"
VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
CHANNEL_RE = re.compile(r"^(stable|latest|testing|v\d+\.\d+)$")
OFFLINE_HINT = (
    "no network access to the k3s releases: set K3S_DIR=/path (make) or --k3s-dir /path "
    "to a folder holding k3s, k3s-arm64, k3s-armhf and sha256sum-{amd64,arm64,arm}.txt"
)


@dataclass(frozen=True)
class K3sArtifact:
    version: str
    binary: Path
    sha256: str
    airgap_images: Path | None


def airgap_asset(board: Board) -> str:
    return f"k3s-airgap-images-{board.arch_facts.k3s_suffix}.tar.zst"


def sha_file_name(board: Board) -> str:
    return f"sha256sum-{board.arch_facts.k3s_suffix}.txt"


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise OsbError(
            f"--k3s-version {version!r}: expected a k3s release like v1.31.4+k3s1"
        )
    return version


def parse_sha256_file(text: str) -> dict[str, str]:
    """`sha256sum` output -> {file name: hex digest}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            out[parts[1].lstrip("*").removeprefix("./")] = parts[0]
    return out


def expected_sha(sums: dict[str, str], asset: str, source: str) -> str:
    if asset not in sums:
        raise OsbError(f"{source} has no checksum for {asset}")
    return sums[asset]


def resolve_channel(channel: str, channel_url: str = CHANNEL_URL) -> str:
    """Ask the k3s channel server which release a channel points at."""
    if not CHANNEL_RE.match(channel):
        raise OsbError(
            f"--k3s-channel {channel!r}: expected stable, latest, testing or vMAJOR.MINOR"
        )
    url = f"{channel_url.rstrip('/')}/{channel}"
    try:
        resp = http_get(url, allow_redirects=False)
    except NetworkError as exc:
        raise OsbError(f"{exc}\n  {OFFLINE_HINT}") from exc
    location = resp.headers.get("location", "")
    version = unquote(urlparse(location).path.rstrip("/").rsplit("/", 1)[-1])
    if not VERSION_RE.match(version):
        raise OsbError(f"channel server {url} did not redirect to a k3s release (got {location!r})")
    return version


def fetch_release(
    version: str, board: Board, cache_dir: Path, progress: Progress,
    release_url: str = RELEASE_URL, airgap: bool = False,
) -> K3sArtifact:
    """Download (or reuse from cache) the verified k3s binary of one release."""
    check_version(version)
    vdir = cache_dir / "k3s" / version
    base = f"{release_url.rstrip('/')}/{quote(version, safe='')}"
    sums_path = vdir / sha_file_name(board)
    try:
        if not sums_path.is_file():
            download(f"{base}/{sha_file_name(board)}", sums_path, progress)
        sums = parse_sha256_file(sums_path.read_text())
        assets = [board.arch_facts.k3s_asset] + ([airgap_asset(board)] if airgap else [])
        for asset in assets:
            want = expected_sha(sums, asset, f"{base}/{sha_file_name(board)}")
            path = vdir / asset
            if path.is_file() and sha256_file(path) == want:
                continue
            path.unlink(missing_ok=True)
            download(f"{base}/{asset}", path, progress, sha256=want)
    except NetworkError as exc:
        raise OsbError(f"{exc}\n  {OFFLINE_HINT}") from exc
    except OsbError:
        # a sums file that led nowhere must not be trusted on the next run
        sums_path.unlink(missing_ok=True)
        raise
    binary = vdir / board.arch_facts.k3s_asset
    return K3sArtifact(
        version, binary, sha256_file(binary), vdir / airgap_asset(board) if airgap else None
    )


def from_local_dir(k3s_dir: Path, board: Board, version: str | None) -> K3sArtifact:
    """An air-gapped release folder; checked against its own sha256 file."""
    if not k3s_dir.is_dir():
        raise OsbError(f"--k3s-dir {k3s_dir}: not a directory")
    binary = k3s_dir / board.arch_facts.k3s_asset
    sums_path = k3s_dir / sha_file_name(board)
    for need in (binary, sums_path):
        if not need.is_file():
            raise OsbError(f"--k3s-dir {k3s_dir}: missing {need.name} (needed for {board.arch})")
    sums = parse_sha256_file(sums_path.read_text())
    want = expected_sha(sums, binary.name, str(sums_path))
    got = sha256_file(binary)
    if got != want:
        raise OsbError(f"--k3s-dir {k3s_dir}: checksum mismatch for {binary.name}: "
                       f"{sums_path.name} says {want}, file is {got}")
    images = k3s_dir / airgap_asset(board)
    if images.is_file():
        img_want = expected_sha(sums, images.name, str(sums_path))
        if sha256_file(images) != img_want:
            raise OsbError(f"--k3s-dir {k3s_dir}: checksum mismatch for {images.name}")
    version = version or _version_file(k3s_dir)
    return K3sArtifact(version, binary, got, images if images.is_file() else None)


def _version_file(k3s_dir: Path) -> str:
    """A release folder may carry a VERSION file; otherwise the version is 'local'."""
    vf = k3s_dir / "VERSION"
    return vf.read_text().strip() if vf.is_file() else "local"


def copy_executable(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, 0o755)
