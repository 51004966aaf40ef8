"""k3s resolution, download and verification against a local HTTP fixture.

The k3s binary served is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py): the
real one cannot be downloaded on the test machine.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.k3s_release import (
    fetch_release,
    from_local_dir,
    parse_sha256_file,
    resolve_channel,
)
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import OsbError
from tests.helpers.k3s_fixture import VERSION, K3sRelease, serve_k3s, write_release_dir

BOARD = load_board("qemu-amd64")


def quiet() -> Progress:
    import io

    return Progress(io.StringIO())


def test_channel_resolves_to_release_version() -> None:
    with serve_k3s() as s:
        assert resolve_channel("stable", s.channel_url) == VERSION
        assert s.release.requests == ["/channels/stable"]


def test_bad_channel_name_is_refused() -> None:
    with pytest.raises(OsbError, match="--k3s-channel 'stabel'"):
        resolve_channel("stabel", "http://127.0.0.1:1")


def test_fetch_verifies_and_caches(tmp_path: Path) -> None:
    with serve_k3s() as s:
        art = fetch_release(VERSION, BOARD, tmp_path, quiet(), s.release_url)
        assert art.binary.read_bytes() == s.release.files["k3s"]
        assert art.sha256 == hashlib.sha256(s.release.files["k3s"]).hexdigest()
        n = len(s.release.requests)
        again = fetch_release(VERSION, BOARD, tmp_path, quiet(), s.release_url)
        assert again.binary == art.binary
        assert len(s.release.requests) == n, "a verified cached binary is not fetched again"


def test_checksum_mismatch_leaves_no_cached_file(tmp_path: Path) -> None:
    rel = K3sRelease(sums_override={"k3s": "0" * 64})
    with serve_k3s(rel) as s, pytest.raises(OsbError, match="checksum mismatch"):
        fetch_release(VERSION, BOARD, tmp_path, quiet(), s.release_url)
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == [], f"partial files left in cache: {left}"


def test_404_names_the_url(tmp_path: Path) -> None:
    with serve_k3s() as s, pytest.raises(OsbError, match=r"HTTP 404.*v1.30.0%2Bk3s1"):
        fetch_release("v1.30.0+k3s1", BOARD, tmp_path, quiet(), s.release_url)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_timeout_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("osbuilder.host.download.TIMEOUT_S", 0.3)
    rel = K3sRelease(delay_s=1.0)
    with serve_k3s(rel) as s, pytest.raises(OsbError, match=r"(?s)timed out.*K3S_DIR"):
        fetch_release(VERSION, BOARD, tmp_path, quiet(), s.release_url)


def test_no_network_says_to_set_k3s_dir(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OsbError, match="set K3S_DIR"):
        resolve_channel("stable", f"http://127.0.0.1:{port}/channels")


def test_invalid_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match="expected a k3s release like"):
        fetch_release("1.31", BOARD, tmp_path, quiet(), "http://127.0.0.1:1")


def test_local_dir_good(tmp_path: Path) -> None:
    d = write_release_dir(tmp_path / "rel")
    art = from_local_dir(d, BOARD, None)
    assert art.version == VERSION
    assert art.binary == d / "k3s"
    assert art.airgap_images is None


def test_local_dir_tampered_binary(tmp_path: Path) -> None:
    d = write_release_dir(tmp_path / "rel")
    (d / "k3s").write_bytes(b"tampered")
    with pytest.raises(OsbError, match="checksum mismatch for k3s"):
        from_local_dir(d, BOARD, None)


def test_local_dir_missing_arch(tmp_path: Path) -> None:
    d = write_release_dir(tmp_path / "rel")
    (d / "k3s").unlink()
    with pytest.raises(OsbError, match=r"missing k3s \(needed for amd64\)"):
        from_local_dir(d, BOARD, None)


def test_local_dir_airgap_images_checked(tmp_path: Path) -> None:
    rel = K3sRelease()
    rel.files["k3s-airgap-images-amd64.tar.zst"] = b"images"
    d = write_release_dir(tmp_path / "rel", rel)
    assert from_local_dir(d, BOARD, None).airgap_images == d / "k3s-airgap-images-amd64.tar.zst"
    (d / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"other")
    with pytest.raises(OsbError, match="checksum mismatch for k3s-airgap"):
        from_local_dir(d, BOARD, None)


def test_parse_sha256_file() -> None:
    text = f"{'a' * 64}  k3s\n{'b' * 64} *k3s-arm64\nnot a line\n"
    assert parse_sha256_file(text) == {"k3s": "a" * 64, "k3s-arm64": "b" * 64}
