"""`osbuilder keys init` and bundle signatures, checked by the real RAUC of the host.

The node runs the same check (`rauc info` against /etc/rauc/keyring.pem) before it writes
anything; these tests prove which bundles that check refuses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from osbuilder.host import secure_boot_keys as sb
from osbuilder.host.keys import init_keys
from osbuilder.shared.errors import OsbError

pytestmark = pytest.mark.skipif(
    not (shutil.which("rauc") and shutil.which("openssl") and shutil.which("mksquashfs")),
    reason="needs rauc, openssl and mksquashfs on the host (run `make deps`)")


def bundle(tmp: Path, keys: Path, name: str = "b.raucb") -> Path:
    content = tmp / f"content-{name}"
    content.mkdir()
    (content / "rootfs.img").write_bytes(os.urandom(1 << 16))  # incompressible: RAUC wants > 4 KiB
    (content / "manifest.raucm").write_text(
        "[update]\ncompatible=osbuilder-qemu-amd64\nversion=1.2.3\n\n[bundle]\nformat=verity\n"
        "\n[image.rootfs]\nfilename=rootfs.img\n")
    out = tmp / name
    subprocess.run(["rauc", "bundle", f"--cert={keys / 'signing.cert.pem'}",
                    f"--key={keys / 'signing.key.pem'}", str(content), str(out)],
                   check=True, capture_output=True)
    return out


def rauc_info(b: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rauc", "info", f"--keyring={keyring}", "--output-format=json",
                           str(b)], capture_output=True, text=True, check=False)


def test_keys_init_makes_a_ca_and_a_signing_key(tmp_path: Path) -> None:
    files = init_keys(tmp_path / "k", "Acme Edge")
    # the update PKI first, then the Secure Boot and PCR keys (test_secure_boot_keys.py)
    assert [f.name for f in files] == ["ca.key.pem", "ca.cert.pem", "signing.key.pem",
                                       "signing.cert.pem", *sb.ALL_FILES]
    for f in files:
        if f.name.endswith(".key.pem"):
            assert f.stat().st_mode & 0o077 == 0, f
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "k/ca.cert.pem"),
                             str(tmp_path / "k/signing.cert.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                           str(tmp_path / "k/signing.cert.pem")], capture_output=True, text=True)
    assert "Acme Edge" in subj.stdout


def test_keys_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init_keys(tmp_path / "k", "x")
    before = (tmp_path / "k/ca.key.pem").read_bytes()
    with pytest.raises(OsbError, match=r"already holds ca\.key\.pem"):
        init_keys(tmp_path / "k", "x")
    assert (tmp_path / "k/ca.key.pem").read_bytes() == before


def test_rotated_signing_key_is_trusted_by_the_same_ca(tmp_path: Path) -> None:
    init_keys(tmp_path / "k1", "x")
    init_keys(tmp_path / "k2", "x", ca_dir=tmp_path / "k1")
    assert (tmp_path / "k2/signing.cert.pem").read_bytes() != (
        tmp_path / "k1/signing.cert.pem").read_bytes()
    r = rauc_info(bundle(tmp_path, tmp_path / "k2"), tmp_path / "k1/ca.cert.pem")
    assert r.returncode == 0, r.stderr


def test_signed_bundle_verifies_and_others_are_refused(tmp_path: Path) -> None:
    init_keys(tmp_path / "fleet", "fleet")
    init_keys(tmp_path / "other", "someone else")
    good = bundle(tmp_path, tmp_path / "fleet")
    ca = tmp_path / "fleet/ca.cert.pem"
    ok = rauc_info(good, ca)
    assert ok.returncode == 0, ok.stderr
    assert '"version":"1.2.3"' in ok.stdout.replace(" ", "")

    foreign = rauc_info(bundle(tmp_path, tmp_path / "other", "o.raucb"), ca)
    assert foreign.returncode != 0
    assert "signature verification failed" in foreign.stderr

    # flip one byte inside the CMS signature (it sits before the 8-byte size at the end)
    tampered = tmp_path / "t.raucb"
    data = bytearray(good.read_bytes())
    sig_size = int.from_bytes(data[-8:], "big")
    data[len(data) - 8 - sig_size // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    bad = rauc_info(tampered, ca)
    assert bad.returncode != 0, "a tampered signature must be refused"
