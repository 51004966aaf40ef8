"""The U-Boot slot chooser on the node (RAUC's custom bootloader backend on U-Boot boards):
it edits the env file that boot.scr reads (osbuilder.bootloaders.uboot.build explains the
variables). Every change rewrites that file in place, then its copy, as boot.scr does: a
power cut tears at most one of them (bad CRC), and the other holds the old state or the
new one:
- set_primary(b): stage b's kernel, initrd and device trees under osb/b/, then put B first
  in BOOT_ORDER with fresh tries (the flip: the last write). Until then the old primary
  boots.
- boot.scr counts a try down on each boot of a slot on trial; at 0 it moves on to the
  next slot of BOOT_ORDER (fallback).
- set_state(b, good) sets BOOT_B_OK=1: b then boots without counting; bad: no tries left,
  and b's verity.txt (its root hash, which boot.scr passes to the kernel) is dropped: RAUC
  marks a slot bad before writing it, and the bundle's hook stages the new hash after.
"""

from __future__ import annotations

from pathlib import Path

from osbuilder.bootloaders.uboot.env_file import ENV_COPY, ENV_FILE, ENV_FILES, env_blob, parse_env
from osbuilder.node.bootfs import (
    ChooserBase,
    SlotMounter,
    fat_overwrite,
    stage_slot_files,
)
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import fsync_dir
from osbuilder.shared.layout import BOOT_TRIES, SLOT_DIR, SLOTS
from osbuilder.shared.verity import VERITY_FILE


class Chooser(ChooserBase):
    def __init__(self, boot_dir: Path, booted: str, mount_slot: SlotMounter | None = None,
                 tries: int = BOOT_TRIES) -> None:
        super().__init__(boot_dir, booted, mount_slot, tries)
        self.env_file = boot_dir / ENV_FILE
        self.env_copy = boot_dir / ENV_COPY

    def env(self) -> dict[str, str]:
        """The state as boot.scr reads it: the file, else (torn) its copy."""
        try:
            return parse_env(self.env_file.read_bytes())
        except FileNotFoundError:
            raise OsbError(f"{self.env_file} missing: the boot partition holds no osbuilder "
                           "U-Boot state") from None
        except OsbError as torn:
            try:
                return parse_env(self.env_copy.read_bytes())
            except (OsbError, FileNotFoundError):
                raise torn from None

    def _write(self, env: dict[str, str]) -> None:
        blob = env_blob(env)
        for name in ENV_FILES:
            fat_overwrite(self.boot_dir / name, blob)

    def _ok(self, env: dict[str, str], slot: str) -> bool:
        return env.get(f"BOOT_{slot.upper()}_OK") == "1"

    def _left(self, env: dict[str, str], slot: str) -> int:
        try:
            return int(env.get(f"BOOT_{slot.upper()}_LEFT", "0"))
        except ValueError:
            return 0

    def tries_left(self, slot: str) -> int | None:
        """None when known good; else boots left before boot.scr moves on."""
        self._check(slot)
        env = self.env()
        return None if self._ok(env, slot) else self._left(env, slot)

    def state(self, slot: str) -> str:
        self._check(slot)
        env = self.env()
        return "good" if self._ok(env, slot) or self._left(env, slot) > 0 else "bad"

    def version(self, slot: str) -> str | None:
        self._check(slot)
        return self.env().get(f"BOOT_{slot.upper()}_VERSION") or None

    def primary(self) -> str | None:
        """What boot.scr boots next: the first slot of BOOT_ORDER that is good or has tries."""
        env = self.env()
        for name in env.get("BOOT_ORDER", "").split():
            slot = name.lower()
            if slot in SLOTS and (self._ok(env, slot) or self._left(env, slot) > 0):
                return slot
        return None

    def set_primary(self, slot: str) -> None:
        self._check(slot)
        assert self.mount_slot is not None, "set_primary needs a slot mounter"
        dest = self.boot_dir / SLOT_DIR / slot
        # the same device trees the booted slot carries (the board's list, from the build)
        here = self.boot_dir / SLOT_DIR / self.booted
        dtbs = tuple(str(p.relative_to(here)) for p in sorted(here.rglob("*.dtb")))
        version = stage_slot_files(self.mount_slot, slot, dest, dtbs)
        env = self.env()
        s = slot.upper()
        others = [n for n in env.get("BOOT_ORDER", "A B").split() if n != s]
        env["BOOT_ORDER"] = " ".join([s, *others])
        env[f"BOOT_{s}_VERSION"] = version
        if not self._ok(env, slot):  # a known-good slot (rollback) stays known good
            env[f"BOOT_{s}_LEFT"] = str(self.tries)
        self._write(env)

    def set_state(self, slot: str, good: bool) -> None:
        self._check(slot)
        env = self.env()
        s = slot.upper()
        env[f"BOOT_{s}_OK"] = "1" if good else "0"
        env[f"BOOT_{s}_LEFT"] = str(self.tries) if good else "0"
        self._write(env)
        verity = self.boot_dir / SLOT_DIR / slot / VERITY_FILE
        if not good and verity.is_file():
            # RAUC marks a slot bad before it writes it: the old root hash must not
            # outlive the old root (the bundle's hook stages the new one)
            verity.unlink()
            fsync_dir(verity.parent)
