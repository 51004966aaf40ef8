"""`osbuilder keys init DIR` and `keys check`: the fleet's update-signing PKI (X.509, for
RAUC bundles), plus its Secure Boot and PCR-policy keys (secure_boot_keys.py).

ca.key.pem      the fleet CA key: keep it offline (it only signs signing certificates)
ca.cert.pem     the CA certificate, valid 20 years: baked into every image as RAUC's keyring
signing.key.pem the build machine's key: signs bundles (`osbuilder build --keys DIR`)
signing.cert.pem  its certificate, issued by the CA, valid 2 years
Rotation: `keys init NEW --ca-dir OLD` issues a new signing key from OLD's CA, reading
OLD/ca.key.pem where it is (never copying it); images keep trusting the new key because
they trust the CA. Builds and `keys check` warn 30 days before a certificate expires.
`keys init` on a folder with the update keys but no Secure Boot keys adds those. Rotation
copies the Secure Boot files a build needs (machines enrolled their certificates) and
never PK.key.pem or KEK.key.pem.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from osbuilder.host import secure_boot_keys as sb
from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import output, run

CA_FILES = ("ca.key.pem", "ca.cert.pem")
SIGNING_FILES = ("signing.key.pem", "signing.cert.pem")
CERTS = ("ca.cert.pem", "signing.cert.pem", *(sb.cert(n) for n in sb.SB_NAMES))
CA_DAYS, SIGNING_DAYS = 7300, 730
WARN_BEFORE = timedelta(days=30)
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
# CMS verification checks the S/MIME signing purpose: digitalSignature and no
# extendedKeyUsage that would exclude it
SIGNING_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
               "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def init_keys(dest: Path, org: str, ca_dir: Path | None = None) -> list[Path]:
    """Write a CA (unless ca_dir has one), a signing key + certificate and the Secure Boot
    and PCR keys into dest; the files written. With ca_dir only its certificate is copied,
    and its Secure Boot files as sb_copy says. A folder with the update keys and no
    Secure Boot keys gets those added."""
    if dest.exists() and not dest.is_dir():
        raise OsbError(f"{dest}: exists and is not a folder; give a new or empty folder")
    made = (CA_FILES[1:] if ca_dir else CA_FILES) + SIGNING_FILES
    existing = [f for f in (*CA_FILES, *SIGNING_FILES) if (dest / f).exists()]
    if existing and ca_dir is None and not sb.has_secure_boot_keys(dest):
        return sb.init_secure_boot(dest, org)
    if ca_dir is not None:  # rotation copies the Secure Boot files in: none may be there
        existing += [f for f in sb.ALL_FILES if (dest / f).exists()]
    if existing:
        raise OsbError(f"{dest}: already holds {', '.join(existing)}; refusing to overwrite "
                       "keys (use a new folder to rotate)")
    if ca_dir is not None:
        if not all((ca_dir / f).is_file() for f in CA_FILES):
            raise OsbError(f"--ca-dir {ca_dir}: expected ca.key.pem and ca.cert.pem there")
        if ca_dir.resolve() == dest.resolve():
            raise OsbError(f"--ca-dir {ca_dir} is DIR itself; give a new folder for the new key")
    dest.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".keys-") as tmp:
            t = Path(tmp)
            ca_key = (ca_dir or t) / "ca.key.pem"
            if ca_dir is None:
                run(["openssl", "req", "-x509", *EC_KEY, "-keyout", ca_key,
                     "-out", t / "ca.cert.pem", "-days", str(CA_DAYS),
                     "-subj", f"/O={org}/CN={org} update CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            else:
                (t / "ca.cert.pem").write_bytes((ca_dir / "ca.cert.pem").read_bytes())
            run(["openssl", "req", "-new", *EC_KEY, "-keyout", t / "signing.key.pem",
                 "-out", t / "signing.csr", "-subj", f"/O={org}/CN={org} bundle signing"])
            (t / "signing.ext").write_text(SIGNING_EXT)
            run(["openssl", "x509", "-req", "-in", t / "signing.csr", "-CA", t / "ca.cert.pem",
                 "-CAkey", ca_key, "-set_serial", str(int.from_bytes(os.urandom(8))),
                 "-days", str(SIGNING_DAYS), "-extfile", t / "signing.ext",
                 "-out", t / "signing.cert.pem"])
            for f in made:  # all or nothing: move in only once every file exists
                os.replace(t / f, dest / f)
                os.chmod(dest / f, 0o600 if f.endswith(".key.pem") else 0o644)
    finally:
        os.umask(old_umask)
    written = [dest / f for f in made]
    if ca_dir is None:
        return written + sb.init_secure_boot(dest, org)
    return written + sb_copy(ca_dir, dest)


def sb_copy(src: Path, dest: Path) -> list[Path]:
    """On rotation: the Secure Boot files a build needs, from the old folder (machines
    enrolled its certificates, and nodes' data is sealed to its PCR key); PK.key.pem and
    KEK.key.pem stay where they are."""
    copied = []
    for f in (*sb.BUILD_FILES, sb.OWNER_FILE):
        if (src / f).is_file():
            # created with its final mode: db.key.pem is never readable by others, not
            # even between the write and a chmod
            mode = 0o600 if f.endswith(".key.pem") else 0o644
            fd = os.open(dest / f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as out:
                out.write((src / f).read_bytes())
            os.chmod(dest / f, mode)  # os.open's mode passed through the umask
            copied.append(dest / f)
    return copied


def expiry(cert: Path) -> datetime:
    """The certificate's notAfter, in UTC."""
    try:
        text = output(["openssl", "x509", "-noout", "-enddate", "-in", cert]).strip()
    except CommandError:
        raise OsbError(f"{cert}: not a PEM certificate (openssl x509 cannot read it)"
                       ) from None
    try:  # notAfter=Mar  4 12:00:00 2027 GMT (openssl's default date format)
        return datetime.strptime(text.removeprefix("notAfter="), "%b %d %H:%M:%S %Y %Z"
                                 ).replace(tzinfo=UTC)
    except ValueError:
        raise OsbError(f"{cert}: cannot read its expiry date ({text[:80]!r})") from None


def expiry_note(cert: Path, now: datetime) -> tuple[str, bool]:
    """(a line saying when cert expires, whether it is time to act: expired or within
    WARN_BEFORE)."""
    end = expiry(cert)
    days = (end - now).days
    if end <= now:
        return f"{cert}: EXPIRED on {end:%Y-%m-%d}", True
    soon = end - now <= WARN_BEFORE
    return (f"{cert}: {'expires soon' if soon else 'valid'} until {end:%Y-%m-%d} "
            f"({days} days)", soon)


def certificates(path: Path) -> list[Path]:
    """A keys folder's certificates, or the one certificate path names."""
    if path.is_dir():
        found = [path / c for c in CERTS if (path / c).is_file()]
        if not found:
            raise OsbError(f"{path}: no ca.cert.pem or signing.cert.pem (a `keys init` folder?)")
        return found
    if not path.is_file():
        raise OsbError(f"{path}: no such file or folder")
    return [path]


def check_certificates(certs: list[Path], now: datetime | None = None
                       ) -> tuple[list[str], list[str]]:
    """(a line per certificate, the warnings among them); an expired certificate is an
    error: bundles signed with it would be refused by every node."""
    now = now or datetime.now(UTC)
    lines, warnings = [], []
    for cert in certs:
        line, act = expiry_note(cert, now)
        lines.append(line)
        if act:
            warnings.append(line)
    expired = [w for w in warnings if "EXPIRED" in w]
    if expired:
        raise OsbError("; ".join(expired) + ": issue a new signing key (`osbuilder keys init "
                       "NEWDIR --ca-dir DIR`), or a new CA for a new fleet")
    return lines, warnings


RENEW_HINT = ("renew the signing key before then: osbuilder keys init NEWDIR --ca-dir "
              "<this CA's folder> (nodes trust the CA, not the key)")
