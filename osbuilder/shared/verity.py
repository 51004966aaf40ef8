"""A slot's dm-verity facts and the kernel options that carry them (pure).

The slot image is the root squashfs followed by its hash tree (`veritysetup format` with
--hash-offset at the squashfs' end, cryptsetup's veritysetup(8)); the root hash cannot be
inside the squashfs it hashes, so it travels on the kernel command line: inside the signed
UKI on UEFI boards, in boot.scr's arguments on U-Boot boards. The initramfs
(scripts/local-top/osbuilder-verity) opens `osb-root` from these options, and `root=`
names that device:
  osb.verity=<root hash>  osb.verity_offset=<hash tree offset, bytes>
  osb.verity_data=<the slot's partition, as root= would name it>
These `osb.*` names are control keys of the node config's command-line source, not config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from osbuilder.shared.errors import OsbError

VERITY_ROOT = "/dev/mapper/osb-root"
BLOCK = 4096
# the slot files a bundle and the boot partition carry on U-Boot boards (boot.scr imports
# it with `env import -t`: one NAME=value line)
VERITY_FILE = "verity.txt"
HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Verity:
    root_hash: str  # sha256, hex
    hash_offset: int  # bytes: the squashfs' size, where the hash tree begins

    def __post_init__(self) -> None:
        if not HASH_RE.match(self.root_hash) or self.hash_offset <= 0 \
                or self.hash_offset % BLOCK:
            raise OsbError(f"not a dm-verity root hash and 4 KiB-aligned offset: "
                           f"{self.root_hash!r} at {self.hash_offset}")

    def options(self) -> list[str]:
        """The options that do not depend on the slot."""
        return [f"osb.verity={self.root_hash}", f"osb.verity_offset={self.hash_offset}"]

    def env_text(self) -> str:
        """verity.txt: what boot.scr appends for a slot (U-Boot boards)."""
        return f"OSB_VERITY={' '.join(self.options())}\n"


def parse_format_output(text: str, hash_offset: int) -> Verity:
    """The facts from `veritysetup format`'s report ("Root hash:      <hex>")."""
    m = re.search(r"^Root hash:\s+([0-9a-f]{64})\s*$", text, re.M)
    if m is None:
        raise OsbError(f"veritysetup format printed no root hash:\n{text[-500:]}")
    return Verity(m.group(1), hash_offset)


def parse_env_text(text: str) -> Verity | None:
    """verity.txt back into facts (None when it names none)."""
    m = re.search(r"^OSB_VERITY=.*osb\.verity=([0-9a-f]{64}).*osb\.verity_offset=(\d+)",
                  text, re.M)
    return Verity(m.group(1), int(m.group(2))) if m else None


def root_options(verity: Verity | None, slot_device: str) -> list[str]:
    """root= and the verity options for a slot whose partition is `slot_device`
    (PARTLABEL=..., PARTUUID=...): the verified device when there is a root hash."""
    if verity is None:
        return [f"root={slot_device}"]
    return [f"root={VERITY_ROOT}", *verity.options(), f"osb.verity_data={slot_device}"]


def uki_cmdline(slot: str, slot_device: str, verity: Verity, encryption: str,
                console: tuple[str, ...], extra: tuple[str, ...]) -> str:
    """The command line baked into slot `slot`'s signed UKI (systemd-stub ignores a boot
    entry's options under Secure Boot, so this is all the kernel gets):
    - the verified root and the slot names (osb.slot for the agent, rauc.slot for RAUC);
    - osb.data=luks: the initramfs unlocks (or, on first boot, formats) LUKS2 data;
    - panic=10: a failure in the initramfs reboots, where boot counting moves on, rather
      than initramfs-tools' root shell (which the TPM would still unseal the data key for);
    - systemd.gpt_auto=0: the initramfs and fstab mount partitions, not auto-discovery."""
    opts = [*root_options(verity, slot_device), "rootfstype=squashfs", "ro",
            f"osb.slot={slot}", f"rauc.slot={slot}"]
    if encryption == "luks":
        opts.append("osb.data=luks")
    opts += ["panic=10", "systemd.gpt_auto=0", *(f"console={c}" for c in console), *extra]
    return " ".join(opts)
