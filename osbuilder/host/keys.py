"""`osbuilder keys init DIR`: the fleet's update-signing PKI (X.509, for RAUC bundles).

ca.key.pem      the fleet CA key: keep it offline (it only signs signing certificates)
ca.cert.pem     the CA certificate: baked into every image as RAUC's keyring
signing.key.pem the build machine's key: signs bundles (`osbuilder build --sign-key`)
signing.cert.pem  its certificate, issued by the CA for 2 years
Rotation: issue a new signing key with the same CA (`keys init` in a new folder with
`--ca-dir` of the old one); images keep trusting it because they trust the CA.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run

FILES = ("ca.key.pem", "ca.cert.pem", "signing.key.pem", "signing.cert.pem")
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
# CMS verification checks the S/MIME signing purpose: digitalSignature and no
# extendedKeyUsage that would exclude it
SIGNING_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
               "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def init_keys(dest: Path, org: str, ca_dir: Path | None = None) -> list[Path]:
    """Write a CA (or reuse ca_dir's) and a signing key + certificate into dest."""
    existing = [f for f in FILES if (dest / f).exists()]
    if existing:
        raise OsbError(f"{dest}: already holds {', '.join(existing)}; refusing to overwrite "
                       "keys (use a new folder to rotate)")
    if ca_dir is not None and not all((ca_dir / f).is_file() for f in FILES[:2]):
        raise OsbError(f"--ca-dir {ca_dir}: expected ca.key.pem and ca.cert.pem there")
    dest.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".keys-") as tmp:
            t = Path(tmp)
            if ca_dir is None:
                run(["openssl", "req", "-x509", *EC_KEY, "-keyout", t / "ca.key.pem",
                     "-out", t / "ca.cert.pem", "-days", "7300",
                     "-subj", f"/O={org}/CN={org} update CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            else:
                for f in FILES[:2]:
                    (t / f).write_bytes((ca_dir / f).read_bytes())
            run(["openssl", "req", "-new", *EC_KEY, "-keyout", t / "signing.key.pem",
                 "-out", t / "signing.csr", "-subj", f"/O={org}/CN={org} bundle signing"])
            (t / "signing.ext").write_text(SIGNING_EXT)
            run(["openssl", "x509", "-req", "-in", t / "signing.csr", "-CA", t / "ca.cert.pem",
                 "-CAkey", t / "ca.key.pem", "-set_serial", str(int.from_bytes(os.urandom(8))),
                 "-days", "730", "-extfile", t / "signing.ext", "-out", t / "signing.cert.pem"])
            for f in FILES:  # all or nothing: move in only once every file exists
                os.replace(t / f, dest / f)
                os.chmod(dest / f, 0o600 if f.endswith(".key.pem") else 0o644)
    finally:
        os.umask(old_umask)
    return [dest / f for f in FILES]
