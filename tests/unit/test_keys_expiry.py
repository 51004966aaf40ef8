"""`keys init --ca-dir` leaves the CA key where it is; certificate expiry is said by
`keys init`, checked by `keys check` and by a signed build, 30 days ahead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from osbuilder.host import secure_boot_keys as sb
from osbuilder.host.keys import check_certificates, expiry, init_keys
from osbuilder.shared.errors import ExitCode, OsbError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs openssl on the host (run `make deps`)")


def osb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def short_lived(keys: Path, days: int) -> Path:
    """Replace keys/signing.cert.pem by one from the same CA that expires in `days`."""
    cert = keys / "signing.cert.pem"
    subprocess.run(["openssl", "x509", "-x509toreq", "-in", str(cert), "-signkey",
                    str(keys / "signing.key.pem"), "-out", str(keys / "req.pem")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(keys / "req.pem"), "-CA",
                    str(keys / "ca.cert.pem"), "-CAkey", str(keys / "ca.key.pem"),
                    "-days", str(days), "-out", str(cert)], check=True, capture_output=True)
    return cert


def test_rotation_never_copies_the_ca_key(tmp_path: Path) -> None:
    init_keys(tmp_path / "old", "x")
    r = osb("keys", "init", str(tmp_path / "new"), "--ca-dir", str(tmp_path / "old"))
    assert r.returncode == 0, r.stderr
    # the Secure Boot files a build needs come along (machines enrolled them); PK's and
    # KEK's private keys stay behind with the CA key
    written = ("ca.cert.pem", "signing.key.pem", "signing.cert.pem", *sb.BUILD_FILES,
               sb.OWNER_FILE)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(written)
    assert r.stdout.split() == [str(tmp_path / "new" / n) for n in written]
    for n in ("ca.key.pem", "PK.key.pem", "KEK.key.pem"):
        assert not (tmp_path / "new" / n).exists(), n
    assert f"the CA key is in {tmp_path / 'old'}, where it stays" in r.stderr
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "old/ca.cert.pem"),
                             str(tmp_path / "new/signing.cert.pem")], capture_output=True)
    assert verify.returncode == 0


def test_init_says_when_the_certificates_expire(tmp_path: Path) -> None:
    r = osb("keys", "init", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    in_2y = (datetime.now(UTC) + timedelta(days=730)).date()
    assert f"signing.cert.pem: valid until {in_2y:%Y-%m-%d} (729 days)" in r.stderr \
        or f"signing.cert.pem: valid until {in_2y:%Y-%m-%d} (730 days)" in r.stderr
    assert "lasts 730 days" in r.stderr
    assert expiry(tmp_path / "k/ca.cert.pem").year - datetime.now(UTC).year in (19, 20)


def test_keys_init_onto_a_file_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("not a folder")
    r = osb("keys", "init", str(f))
    assert r.returncode == ExitCode.BAD_INPUT and "Traceback" not in r.stderr
    assert r.stderr == f"osbuilder: error: {f}: exists and is not a folder; give a new or " \
                       "empty folder\n"


def test_check_warns_30_days_ahead_and_refuses_expired(tmp_path: Path) -> None:
    keys = tmp_path / "k"
    init_keys(keys, "x")
    r = osb("keys", "check", str(keys))
    assert r.returncode == 0 and "warning" not in r.stderr
    # ca, signing, and the Secure Boot PK, KEK and db certificates
    assert r.stdout.count("valid until") == 5
    short_lived(keys, 20)
    r = osb("keys", "check", str(keys))
    assert r.returncode == 0
    assert "signing.cert.pem: expires soon until" in r.stdout
    assert "warning:" in r.stderr and "keys init NEWDIR --ca-dir" in r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    r = osb("keys", "check", str(tmp_path / "junk.pem"))
    assert r.returncode == ExitCode.BAD_INPUT and "junk.pem: not a PEM certificate" in r.stderr
    later = datetime.now(UTC) + timedelta(days=25)
    with pytest.raises(OsbError, match=r"signing\.cert\.pem: EXPIRED on"):
        check_certificates([keys / "signing.cert.pem"], later)


def test_signed_build_warns_before_any_work(tmp_path: Path) -> None:
    """The warning comes first; the build then stops at the missing root (not root) or at
    an unwritable --out, whichever this host has."""
    keys = tmp_path / "k"
    init_keys(keys, "x")
    short_lived(keys, 10)
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    r = osb("build", "--keys", str(keys), "--out", str(blocker / "out"), env=env)
    assert "warning:" in r.stderr and "signing.cert.pem: expires soon" in r.stderr
    assert r.returncode == ExitCode.BAD_INPUT
