"""The fleet's Secure Boot keys and its PCR-policy key, in a `keys init` folder.

  PK.key.pem  PK.cert.pem  PK.auth      platform key: keep PK.key.pem offline
  KEK.key.pem KEK.cert.pem KEK.auth     key exchange key: keep KEK.key.pem offline
  db.key.pem  db.cert.pem  db.auth      signs systemd-boot and every UKI (each build)
  secure-boot-owner.guid                owner GUID of the fleet's signature lists
  pcr-signing.key.pem, pcr-signing.pub.pem
                                        signs each UKI's PCR 11 policy (systemd-measure);
                                        the data partition's key is sealed to its public half
The certificates are RSA-2048 (what firmware supports everywhere), valid 20 years. The
`.auth` files are what systemd-boot enrolls on a machine in setup mode: PK and KEK signed
by PK, db signed by KEK (UEFI's chain is these signatures, not X.509 issuers). A build
needs the three certificates, the three `.auth` files, db.key.pem and the PCR key pair,
and checks that they chain before any work; PK.key.pem and KEK.key.pem are only used
here, to sign the `.auth` files.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from osbuilder.shared import efi_sig
from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import output, run

SB_NAMES = ("PK", "KEK", "db")
OWNER_FILE = "secure-boot-owner.guid"
PCR_KEY, PCR_PUB = "pcr-signing.key.pem", "pcr-signing.pub.pem"
SB_DAYS = 7300
HINT = ("`osbuilder keys init DIR` adds the Secure Boot and PCR keys to a keys folder "
        "that has none")


def cert(name: str) -> str:
    return f"{name}.cert.pem"


def key(name: str) -> str:
    return f"{name}.key.pem"


def auth(name: str) -> str:
    return f"{name}.auth"


# what init writes; PK and KEK keys are the ones to move offline
ALL_FILES = (*(f(n) for n in SB_NAMES for f in (key, cert, auth)), OWNER_FILE, PCR_KEY,
             PCR_PUB)
# what a build reads
BUILD_FILES = (*(cert(n) for n in SB_NAMES), *(auth(n) for n in SB_NAMES), key("db"),
               PCR_KEY, PCR_PUB)


@dataclass(frozen=True)
class SecureBootKeys:
    """The files of a checked keys folder a build uses (absolute paths)."""

    folder: Path
    db_key: Path
    db_cert: Path
    auth_files: tuple[Path, ...]  # PK.auth, KEK.auth, db.auth: copied to the ESP
    pcr_key: Path
    pcr_pub: Path


def has_secure_boot_keys(folder: Path) -> bool:
    return any((folder / f).exists() for f in ALL_FILES)


def init_secure_boot(dest: Path, org: str, now: datetime | None = None) -> list[Path]:
    """Write the Secure Boot keys, their .auth files and the PCR key pair into dest
    (which must hold none of them); the files written."""
    existing = [f for f in ALL_FILES if (dest / f).exists()]
    if existing:
        raise OsbError(f"{dest}: already holds {', '.join(existing)}; refusing to overwrite "
                       "Secure Boot keys (machines that enrolled them trust only them)")
    stamp = efi_sig.efi_time((now or datetime.now(UTC)).replace(microsecond=0))
    owner = uuid.uuid4()
    old_umask = os.umask(0o077)
    try:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".sb-keys-") as tmp:
            t = Path(tmp)
            for n in SB_NAMES:
                run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256",
                     "-nodes", "-days", str(SB_DAYS), "-keyout", t / key(n),
                     "-out", t / cert(n), "-subj", f"/O={org}/CN={org} Secure Boot {n}"])
            for n in SB_NAMES:
                content = efi_sig.signature_list(der_of(t / cert(n)), owner)
                signer = efi_sig.SIGNER[n]
                signed = sign_detached(efi_sig.signed_bytes(n, stamp, content),
                                       t / cert(signer), t / key(signer), t)
                (t / auth(n)).write_bytes(efi_sig.auth_file(stamp, signed, content))
            (t / OWNER_FILE).write_text(f"{owner}\n")
            run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", t / PCR_KEY])
            run(["openssl", "pkey", "-in", t / PCR_KEY, "-pubout", "-out", t / PCR_PUB])
            for f in ALL_FILES:  # all or nothing
                os.replace(t / f, dest / f)
                os.chmod(dest / f, 0o600 if f.endswith(".key.pem") else 0o644)
    finally:
        os.umask(old_umask)
    return [dest / f for f in ALL_FILES]


def der_of(pem: Path) -> bytes:
    try:
        return run(["openssl", "x509", "-in", pem, "-outform", "DER"], capture=True).stdout
    except CommandError:
        raise OsbError(f"{pem}: not a PEM certificate (openssl x509 cannot read it)") from None


def sign_detached(data: bytes, signer_cert: Path, signer_key: Path, tmp: Path) -> bytes:
    """A bare PKCS#7 SignedData over data: SHA-256, no signed attributes, the signer's
    certificate included (what sign-efi-sig-list makes)."""
    src = tmp / "to-sign.bin"
    src.write_bytes(data)
    info = run(["openssl", "smime", "-sign", "-binary", "-noattr", "-md", "sha256",
                "-outform", "DER", "-signer", signer_cert, "-inkey", signer_key, "-in", src],
               capture=True).stdout
    src.unlink()
    return efi_sig.bare_signed_data(info)


def verify_detached(signed_data: bytes, data: bytes, signer_cert: Path, tmp: Path) -> bool:
    """Whether signed_data is a signature over data by signer_cert's key (that certificate
    alone, not one the signature carries)."""
    (tmp / "data.bin").write_bytes(data)
    (tmp / "sig.p7").write_bytes(efi_sig.content_info(signed_data))
    proc = run(["openssl", "smime", "-verify", "-binary", "-inform", "DER",
                "-in", tmp / "sig.p7", "-content", tmp / "data.bin", "-certfile", signer_cert,
                "-nointern", "-noverify", "-out", "/dev/null"], check=False)
    return proc.returncode == 0


def public_key(path: Path, private: bool) -> str:
    argv: list[str | Path] = ["openssl", "pkey", "-in", path, "-pubout"] if private else \
        ["openssl", "pkey", "-pubin", "-in", path, "-pubout"]
    try:
        return output(argv)
    except CommandError:
        kind = "private key" if private else "public key"
        raise OsbError(f"{path}: not a PEM {kind} (openssl pkey cannot read it)") from None


def cert_public_key(path: Path) -> str:
    try:
        return output(["openssl", "x509", "-in", path, "-noout", "-pubkey"])
    except CommandError:
        raise OsbError(f"{path}: not a PEM certificate (openssl x509 cannot read it)") from None


def check_secure_boot_keys(folder: Path) -> SecureBootKeys:
    """The folder's Secure Boot and PCR keys, checked: every file a build needs is there,
    each key matches its certificate, each .auth file enrolls its own certificate and is
    signed by the key above it (PK by PK, KEK by PK, db by KEK). Raises naming the file."""
    for f in BUILD_FILES:
        if not (folder / f).is_file():
            raise OsbError(f"{folder / f}: missing: a Secure Boot build needs "
                           f"{', '.join(BUILD_FILES)} in the keys folder ({HINT})")
    if public_key(folder / key("db"), True) != cert_public_key(folder / cert("db")):
        raise OsbError(f"{folder / key('db')}: does not belong to {folder / cert('db')}: "
                       "the keys do not chain")
    if public_key(folder / PCR_KEY, True) != public_key(folder / PCR_PUB, False):
        raise OsbError(f"{folder / PCR_KEY}: does not belong to {folder / PCR_PUB}")
    with tempfile.TemporaryDirectory(prefix="osb-sb-check-") as tmp:
        for n in SB_NAMES:
            path = folder / auth(n)
            a = efi_sig.parse_auth(path.read_bytes(), str(path))
            try:
                enrolled = efi_sig.x509_certificates(a.content)
            except OsbError as exc:
                raise OsbError(f"{path}: {exc}") from None
            if der_of(folder / cert(n)) not in enrolled:
                raise OsbError(f"{path}: does not enroll {folder / cert(n)}: the keys do not "
                               "chain")
            signer = folder / cert(efi_sig.SIGNER[n])
            if not verify_detached(a.signed_data, efi_sig.signed_bytes(n, a.timestamp,
                                                                        a.content),
                                   signer, Path(tmp)):
                raise OsbError(f"{path}: is not signed by {signer}: the keys do not chain")
    return SecureBootKeys(folder=folder.resolve(), db_key=(folder / key("db")).resolve(),
                          db_cert=(folder / cert("db")).resolve(),
                          auth_files=tuple((folder / auth(n)).resolve() for n in SB_NAMES),
                          pcr_key=(folder / PCR_KEY).resolve(),
                          pcr_pub=(folder / PCR_PUB).resolve())
