"""A new slot's boot files from its update bundle: checked, then put on the boot partition.

`osbuilder-agent stage-boot SLOT BUNDLE_DIR` is RAUC's slot post-install hook (the bundle's
hook.sh): RAUC runs it after writing the slot and before it asks the slot chooser to make
the slot primary, so what it refuses never becomes the next boot.
- uki-<slot>.efi (UEFI boards built with Secure Boot keys): the slot's signed UKI, whose
  command line carries the slot's dm-verity root hash. It must be a UKI of this board for
  this slot, signed by a key in the firmware's db (the certificates of the db variable;
  when Secure Boot is not on, the fleet's db certificate in this image). systemd-boot
  257 hands a UKI the firmware refuses back to the firmware, which does not reset by
  itself, so a mis-signed update would otherwise strand the node until a power cycle.
- verity.txt (U-Boot boards): the slot's root hash, read by boot.scr.
`upgrade` runs the same checks on the bundle before RAUC writes anything.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path

from osbuilder.bootloaders.systemd_boot.entries import UKI_FILE
from osbuilder.node.bootfs import fat_write
from osbuilder.node.paths import AgentPaths
from osbuilder.node.secure_boot import EFIVARS, enrolled_db, secure_boot_state
from osbuilder.node.sysinfo import os_release, read
from osbuilder.shared import pe
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import SLOT_DIR, SLOTS
from osbuilder.shared.run import run
from osbuilder.shared.verity import VERITY_FILE, parse_env_text

IMAGE_DB_CERT = "usr/share/osbuilder/secure-boot/db.cert.pem"  # under the node's root
UKI_SECTIONS = (".linux", ".initrd", ".cmdline", ".osrel")


def say(msg: str) -> None:
    print(f"osbuilder-agent: stage-boot: {msg}", flush=True)


def uki_name(slot: str) -> str:
    return f"uki-{slot}.efi"


@dataclass(frozen=True)
class Uki:
    os_release: dict[str, str]
    cmdline: str


def read_uki(path: Path) -> Uki:
    with path.open("rb") as f:
        table = pe.sections(f, path.name)
        missing = [s for s in UKI_SECTIONS if s not in table]
        if missing:
            raise OsbError(f"{path.name}: not a Unified Kernel Image (no {', '.join(missing)})")
        osrel = pe.read_section(f, table, ".osrel").rstrip(b"\0").decode(errors="replace")
        cmdline = pe.read_section(f, table, ".cmdline").rstrip(b"\0").decode(errors="replace")
    return Uki(os_release(osrel), cmdline.strip())


def pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def trusted_certificates(root: Path, efivars: Path = EFIVARS) -> tuple[list[str], str]:
    """(PEM certificates a UKI may be signed by, where they come from)."""
    if secure_boot_state(efivars) == "on":
        return [pem(c) for c in enrolled_db(efivars)], "this machine's Secure Boot db"
    cert = root / IMAGE_DB_CERT
    if cert.is_file():
        return [cert.read_text()], f"/{IMAGE_DB_CERT} (Secure Boot is not on here)"
    return [], "this image (built without Secure Boot keys)"


def signed_by(uki: Path, certs: list[str]) -> bool:
    with tempfile.TemporaryDirectory(prefix="osb-db-") as tmp:
        for i, text in enumerate(certs):
            cert = Path(tmp) / f"{i}.pem"
            cert.write_text(text)
            if run(["sbverify", f"--cert={cert}", uki], check=False).returncode == 0:
                return True
    return False


def check_uki(paths: AgentPaths, slot: str, uki: Path, efivars: Path = EFIVARS) -> Uki:
    """The UKI, if it may become slot `slot`'s; else an OsbError saying why not."""
    facts = read_uki(uki)
    ours = os_release(read(str(paths.root / "usr/lib/os-release"))).get("IMAGE_ID")
    theirs = facts.os_release.get("IMAGE_ID")
    if theirs != ours:
        raise OsbError(f"{uki.name}: a UKI of {theirs or 'another system'}, this node runs "
                       f"{ours}: refusing it")
    if f"osb.slot={slot}" not in facts.cmdline.split():
        raise OsbError(f"{uki.name}: its command line is not slot {slot}'s: refusing it")
    certs, where = trusted_certificates(paths.root, efivars)
    if not signed_by(uki, certs):
        raise OsbError(f"{uki.name}: not signed by a key in {where}: refusing it (the "
                       "firmware would not start it)")
    return facts


def boots_ukis(paths: AgentPaths) -> bool:
    """Whether this node boots signed UKIs (it then takes no update without them)."""
    return (paths.root / IMAGE_DB_CERT).is_file()


def check_boot_files(paths: AgentPaths, bundle_dir: Path) -> None:
    """Before RAUC writes a slot: the bundle's UKIs, for either slot it may land in."""
    ukis = [bundle_dir / uki_name(s) for s in SLOTS]
    if not any(u.is_file() for u in ukis):
        if boots_ukis(paths):
            raise OsbError("the bundle carries no signed UKI and this node boots only signed "
                           "kernels: build it with --keys (docs/trust.md)")
        return
    for slot, uki in zip(SLOTS, ukis, strict=True):
        if not uki.is_file():
            raise OsbError(f"the bundle carries no {uki.name}")
        check_uki(paths, slot, uki)


def stage_boot(paths: AgentPaths, slot: str, bundle_dir: Path) -> int:
    if slot not in SLOTS:
        raise OsbError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")
    dest = paths.boot_dir / SLOT_DIR / slot
    uki = bundle_dir / uki_name(slot)
    verity = bundle_dir / VERITY_FILE
    if uki.is_file():
        facts = check_uki(paths, slot, uki)
        fat_write(dest / UKI_FILE, uki.read_bytes())
        say(f"slot {slot}: signed UKI of {facts.os_release.get('IMAGE_VERSION', '?')} staged")
    elif boots_ukis(paths):
        raise OsbError(f"the bundle carries no {uki.name} and this node boots only signed "
                       "kernels: refusing the slot")
    if verity.is_file():
        text = verity.read_text()
        if parse_env_text(text) is None:
            raise OsbError(f"{verity.name}: names no root hash")
        fat_write(dest / VERITY_FILE, text.encode())
        say(f"slot {slot}: dm-verity root hash staged")
    return 0
