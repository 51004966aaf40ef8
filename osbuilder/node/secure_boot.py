"""The node's view of the trust chain: Secure Boot state and db from the firmware's
variables (efivarfs: 4 bytes of attributes, then the value), the dm-verity root and the
encrypted data from device-mapper (/sys/block/dm-*/dm/), and the initramfs' report of
how it unlocked the data (/run/osbuilder/data-state)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

EFIVARS = Path("/sys/firmware/efi/efivars")
# EFI_GLOBAL_VARIABLE (SecureBoot, SetupMode) as efivarfs names it: efi_sig.GLOBAL_VARIABLE,
# which is not imported for it (uuid, datetime, dataclasses: the boot's status line reads
# this, beside the units that start then)
GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SYS_BLOCK = Path("/sys/block")
DATA_STATE = Path("/run/osbuilder/data-state")
RECOVERY_KEY = Path("/run/osbuilder/recovery-key")


def efivar(name: str, guid: str, efivars: Path = EFIVARS) -> bytes | None:
    try:
        return (efivars / f"{name}-{guid}").read_bytes()[4:]
    except OSError:
        return None


def secure_boot_state(efivars: Path = EFIVARS) -> str:
    """on, off, setup (keys not enrolled yet) or none (no UEFI variables)."""
    sb = efivar("SecureBoot", GLOBAL_VARIABLE, efivars)
    if sb is None:
        return "none" if not efivars.is_dir() else "off"
    if sb[:1] == b"\x01":
        return "on"
    setup = efivar("SetupMode", GLOBAL_VARIABLE, efivars) or b""
    return "setup" if setup[:1] == b"\x01" else "off"


def enrolled_db(efivars: Path = EFIVARS) -> list[bytes]:
    """The X.509 certificates (DER) of the firmware's db: what it lets boot."""
    from osbuilder.shared import efi_sig

    raw = efivar("db", str(efi_sig.IMAGE_SECURITY_DATABASE), efivars)
    return efi_sig.x509_certificates(raw) if raw else []


class DmDevice(NamedTuple):
    name: str
    uuid: str


def dm_devices(sys_block: Path = SYS_BLOCK) -> list[DmDevice]:
    found = []
    for d in sorted(sys_block.glob("dm-*")):
        try:
            found.append(DmDevice((d / "dm/name").read_text().strip(),
                                  (d / "dm/uuid").read_text().strip()))
        except OSError:
            continue
    return found


def verity_state(devices: list[DmDevice]) -> str:
    """on when the root is the dm-verity device the initramfs opened."""
    return "on" if any(d.name == "osb-root" and d.uuid.startswith("CRYPT-VERITY")
                       for d in devices) else "off"


def encryption_state(devices: list[DmDevice], data_state: Path = DATA_STATE) -> str:
    """luks2 (how the initramfs unlocked it: tpm2, recovery, formatted), or none."""
    if not any(d.name == "osb-data" and d.uuid.startswith("CRYPT-LUKS2") for d in devices):
        return "none"
    try:
        how = data_state.read_text().strip()
    except OSError:
        how = ""
    return f"luks2-{how}" if how else "luks2"
