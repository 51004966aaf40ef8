"""The fleet's Secure Boot keys: `keys init` makes PK/KEK/db, their .auth files and the
PCR-policy key; a build checks that they chain before any work and names the file that
does not. The chain is the .auth signatures (UEFI 2.10, 8.2.2: PK's update signed by PK,
KEK's by PK, db's by KEK), not X.509 issuers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host import secure_boot_keys as sb
from osbuilder.host.keys import init_keys
from osbuilder.shared import efi_sig
from osbuilder.shared.errors import ExitCode, OsbError


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet") / "keys"
    init_keys(d, "Acme Edge")
    return d


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("other") / "keys"
    init_keys(d, "Someone Else")
    return d


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_init_makes_the_three_keys_their_auth_files_and_the_pcr_key(fleet: Path) -> None:
    for f in sb.ALL_FILES:
        assert (fleet / f).is_file(), f
        mode = (fleet / f).stat().st_mode & 0o777
        assert mode == (0o600 if f.endswith(".key.pem") else 0o644), (f, oct(mode))
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                              str(fleet / "db.cert.pem")], capture_output=True, text=True)
    assert "Acme Edge Secure Boot db" in subject.stdout
    bits = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           str(fleet / "PK.cert.pem")], capture_output=True, text=True)
    assert "Public-Key: (2048 bit)" in bits.stdout  # RSA-2048: what all firmware takes


def test_auth_file_layout_is_uefis(fleet: Path) -> None:
    """EFI_VARIABLE_AUTHENTICATION_2: EFI_TIME, WIN_CERTIFICATE_UEFI_GUID (revision 0x0200,
    type 0x0EF1, EFI_CERT_TYPE_PKCS7_GUID), a bare SignedData, then the signature list
    holding the variable's one certificate, owned by the fleet's GUID."""
    data = (fleet / "db.auth").read_bytes()
    assert data[16 + 4:16 + 8] == bytes.fromhex("0002f10e")
    assert data[16 + 8:16 + 24] == efi_sig.CERT_PKCS7.bytes_le
    a = efi_sig.parse_auth(data, "db.auth")
    assert a.signed_data[0] == 0x30 and efi_sig.SIGNED_DATA_OID not in a.signed_data[:20]
    der = sb.der_of(fleet / "db.cert.pem")
    assert efi_sig.x509_certificates(a.content) == [der]
    owner = (fleet / sb.OWNER_FILE).read_text().strip()
    assert a.content[28:44] == __import__("uuid").UUID(owner).bytes_le


def test_a_fresh_folder_chains(fleet: Path) -> None:
    keys = sb.check_secure_boot_keys(fleet)
    assert keys.db_key == (fleet / "db.key.pem").resolve()
    assert [p.name for p in keys.auth_files] == ["PK.auth", "KEK.auth", "db.auth"]


@pytest.mark.parametrize("name", sb.BUILD_FILES)
def test_each_missing_file_is_named(fleet: Path, tmp_path: Path, name: str) -> None:
    d = copy(fleet, tmp_path / "k")
    (d / name).unlink()
    with pytest.raises(OsbError, match=rf"{d / name}: missing: a Secure Boot build needs"):
        sb.check_secure_boot_keys(d)


def test_offline_keys_are_not_needed(fleet: Path, tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    (d / "PK.key.pem").unlink()
    (d / "KEK.key.pem").unlink()
    sb.check_secure_boot_keys(d)


def test_db_signed_by_another_kek_does_not_chain(fleet: Path, other: Path,
                                                tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    for f in ("db.key.pem", "db.cert.pem", "db.auth"):  # a whole db from another fleet
        shutil.copyfile(other / f, d / f)
    with pytest.raises(OsbError, match=rf"{d / 'db.auth'}: is not signed by "
                                       rf"{d / 'KEK.cert.pem'}: the keys do not chain"):
        sb.check_secure_boot_keys(d)


def test_kek_signed_by_another_pk_does_not_chain(fleet: Path, other: Path,
                                                tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    for f in ("PK.cert.pem", "PK.auth"):
        shutil.copyfile(other / f, d / f)
    with pytest.raises(OsbError, match=r"KEK\.auth: is not signed by .*PK\.cert\.pem"):
        sb.check_secure_boot_keys(d)


def test_db_key_of_another_certificate(fleet: Path, other: Path, tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    shutil.copyfile(other / "db.key.pem", d / "db.key.pem")
    with pytest.raises(OsbError, match=r"db\.key\.pem: does not belong to .*db\.cert\.pem"):
        sb.check_secure_boot_keys(d)


def test_auth_that_enrolls_another_certificate(fleet: Path, other: Path,
                                               tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    shutil.copyfile(other / "db.cert.pem", d / "db.cert.pem")
    shutil.copyfile(other / "db.key.pem", d / "db.key.pem")
    with pytest.raises(OsbError, match=r"db\.auth: does not enroll .*db\.cert\.pem"):
        sb.check_secure_boot_keys(d)


def test_pcr_key_pair_must_match(fleet: Path, other: Path, tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    shutil.copyfile(other / sb.PCR_PUB, d / sb.PCR_PUB)
    with pytest.raises(OsbError, match=r"pcr-signing\.key\.pem: does not belong to"):
        sb.check_secure_boot_keys(d)


def test_a_file_that_is_not_an_auth_file(fleet: Path, tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    (d / "KEK.auth").write_bytes(b"not an auth file" * 8)
    with pytest.raises(OsbError, match=r"KEK\.auth: not an EFI_VARIABLE_AUTHENTICATION_2"):
        sb.check_secure_boot_keys(d)


def test_an_update_keys_folder_gets_secure_boot_keys_added(tmp_path: Path) -> None:
    d = tmp_path / "k"
    init_keys(d, "x")
    for f in sb.ALL_FILES:  # as `keys init` made it before Secure Boot existed
        (d / f).unlink()
    ca = (d / "ca.key.pem").read_bytes()
    added = init_keys(d, "x")
    assert sorted(p.name for p in added) == sorted(sb.ALL_FILES)
    assert (d / "ca.key.pem").read_bytes() == ca
    sb.check_secure_boot_keys(d)
    with pytest.raises(OsbError, match=r"already holds ca\.key\.pem"):
        init_keys(d, "x")


def test_rotation_keeps_the_enrolled_keys_and_leaves_pk_kek_offline(fleet: Path,
                                                                   tmp_path: Path) -> None:
    new = tmp_path / "new"
    init_keys(new, "x", ca_dir=fleet)
    for f in (*sb.BUILD_FILES, sb.OWNER_FILE):
        assert (new / f).read_bytes() == (fleet / f).read_bytes(), f
    assert not (new / "PK.key.pem").exists() and not (new / "KEK.key.pem").exists()
    assert not (new / "ca.key.pem").exists()
    sb.check_secure_boot_keys(new)
    assert (new / "db.key.pem").stat().st_mode & 0o077 == 0
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "db.auth").write_bytes(b"a machine's enrolled list")
    with pytest.raises(OsbError, match=r"taken: already holds db\.auth"):
        init_keys(taken, "x", ca_dir=fleet)
    assert sorted(p.name for p in taken.iterdir()) == ["db.auth"]  # nothing written


def test_build_with_a_missing_key_stops_before_any_work(fleet: Path, tmp_path: Path) -> None:
    d = copy(fleet, tmp_path / "k")
    (d / "db.key.pem").unlink()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--keys", str(d),
                        "--out", str(out)], capture_output=True, text=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr
    assert f"{d / 'db.key.pem'}: missing" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists(), "the build started work"
