"""Stage trust-files: the public halves of the fleet's trust keys in the image (never a
private key), and the data partition's first-boot handling when it is encrypted.

- /usr/share/osbuilder/secure-boot/db.cert.pem: the agent checks an update's UKIs against
  it when the firmware's own db cannot be read (Secure Boot off, no UEFI variables).
- /etc/systemd/tpm2-pcr-public-key.pem: systemd-cryptenroll's default for
  --tpm2-public-key, to seal the data key to a new TPM after a recovery-key unlock.
- Encrypted data is formatted and grown by the initramfs on first boot (LUKS2 cannot be
  grown by systemd-repart's GrowFileSystem): its repart.d definition is removed, so
  systemd-repart.service (ConditionDirectoryNotEmpty=) does not run.
"""

from __future__ import annotations

import shutil

from osbuilder.host.context import BuildContext

DB_CERT = "usr/share/osbuilder/secure-boot/db.cert.pem"
PCR_PUBLIC_KEY = "etc/systemd/tpm2-pcr-public-key.pem"
REPART_DATA = "usr/lib/repart.d/50-osbuilder-data.conf"


def install_trust_files(ctx: BuildContext) -> None:
    r = ctx.rootfs
    keys = ctx.trust.secure_boot
    for rel in (DB_CERT, PCR_PUBLIC_KEY):
        (r / rel).unlink(missing_ok=True)
    if keys is not None:
        for src, rel in ((keys.db_cert, DB_CERT), (keys.pcr_pub, PCR_PUBLIC_KEY)):
            (r / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, r / rel)
            (r / rel).chmod(0o644)
    if ctx.trust.encryption == "luks":
        (r / REPART_DATA).unlink(missing_ok=True)
    ctx.progress.say(f"    {ctx.trust.summary()}")
