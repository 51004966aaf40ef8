"""What of the trust chain a build makes, decided before any work (docs/trust.md).

- UEFI boards built with Secure Boot keys (--keys): systemd-boot and one Unified Kernel
  Image per slot, signed with the fleet's db key; each UKI's command line names its
  slot's dm-verity root hash; the data partition is LUKS2 with its key sealed to the TPM
  under the fleet's signed PCR 11 policy (when the board has a TPM and encryption is not
  `none`).
- UEFI boards without Secure Boot keys boot as before: no UKI, no verity (a root hash in a
  boot entry anyone can edit protects nothing), no encryption (its policy is the fleet's
  PCR key).
- U-Boot boards: verity roots, the root hash passed by boot.scr; Debian's U-Boot verifies
  nothing it loads, so this detects a changed root, not a changed boot partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from osbuilder.bootloaders import bootloader
from osbuilder.host.boards import Board
from osbuilder.host.secure_boot_keys import SecureBootKeys, check_secure_boot_keys
from osbuilder.host.settings import BuildOptions
from osbuilder.shared.errors import OsbError

# live formats boot the image's kernel and squashfs from a medium or the network; they
# are not signed UKIs yet, and their installer writes an unsigned disk
UNSIGNED_FORMATS = ("iso", "pxe")


@dataclass(frozen=True)
class TrustPlan:
    secure_boot: SecureBootKeys | None = None  # signed systemd-boot and UKIs
    verity: bool = False  # each slot's root is squashfs + dm-verity hash tree
    encryption: str = "none"  # luks: LUKS2 data, key sealed to the TPM2
    notes: tuple[str, ...] = ()  # what the build says at its start

    @property
    def uki(self) -> bool:
        return self.secure_boot is not None

    def summary(self) -> str:
        return (f"secure boot {'on' if self.uki else 'off'}, verity "
                f"{'on' if self.verity else 'off'}, data encryption {self.encryption}")


def plan_trust(board: Board, options: BuildOptions) -> TrustPlan:
    """The trust chain of this board's build; raises (naming the file or setting) when
    the keys or the choices cannot work, before anything is built."""
    uefi = bootloader(board.bootloader).uefi
    notes: list[str] = []
    keys = check_secure_boot_keys(options.keys) if uefi and options.keys else None
    if keys is not None:
        unsigned = [f for f in options.formats if f in UNSIGNED_FORMATS]
        if unsigned:
            raise OsbError(f"--format {','.join(unsigned)}: live systems are not signed yet; "
                           "build them without Secure Boot keys (--sign-key/--sign-cert for "
                           "the bundle), or build img (docs/trust.md)")
    elif uefi:
        notes.append("no Secure Boot keys (--keys): unsigned boot, no verity, no data "
                     "encryption (docs/trust.md)")
    chosen = options.encryption or board.encryption
    where = "--encryption" if options.encryption else f"encryption in {board.source}"
    if chosen == "luks":
        if not uefi:
            raise OsbError(f"{where}: luks needs a UEFI board (its key is sealed to a signed "
                           f"PCR 11 policy of the UKI); {board.name} boots with "
                           f"{board.bootloader}")
        if not board.tpm:
            raise OsbError(f"{where}: luks needs a TPM and board {board.name} has none "
                           f"(tpm: false in {board.source})")
        if keys is None:
            raise OsbError(f"{where}: luks needs --keys with Secure Boot keys: the data key is "
                           "sealed to the fleet's signed PCR policy")
    encryption = chosen or "none"
    if chosen is None and keys is not None:
        if board.tpm:
            encryption = "luks"
        else:
            notes.append(f"board {board.name} has no TPM (tpm: false in {board.source}): the "
                         "data partition is not encrypted")
    if not uefi:
        notes.append(f"{board.bootloader}: dm-verity root, its hash passed by boot.scr; "
                     "the boot partition itself is not verified (docs/trust.md)")
    return TrustPlan(secure_boot=keys, verity=keys is not None or not uefi,
                     encryption=encryption, notes=tuple(notes))
