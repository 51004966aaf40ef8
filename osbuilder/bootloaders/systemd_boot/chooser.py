"""The systemd-boot slot chooser on the node: RAUC's custom bootloader backend for UEFI boards.

State lives only in the ESP's entry file names (boot counting, as in the Boot Loader
Specification) and `version` priorities (entries.py beside this module), never in EFI
variables: EC2 and some NUC firmware lose or refuse them. Every change is one file written beside
its target and renamed over it, so a power cut leaves the old or the new entry:
- set_primary(b): stage b's kernel and initrd on the ESP, then write `osb-b+3.conf` with the
  highest priority, then drop b's older entry file. Until that rename the old primary boots.
- systemd-boot decrements the counter on each try; a counter at 0 sorts last (fallback).
- set_state(b, good) drops the counter (what systemd-bless-boot does after
  boot-complete.target); set_state(b, bad) sets it to 0.
Signed nodes boot each slot's signed UKI (`efi /osb/b/uki.efi`): RAUC marks the slot bad
before writing it (which drops its UKI), the bundle's hook stages the new one after
(osbuilder.node.upgrade.boot_files), and set_primary writes an entry starting it. A slot
without a staged UKI gets a kernel + initrd entry, as on unsigned nodes.
"""

from __future__ import annotations

import os
from pathlib import Path

from osbuilder.bootloaders.systemd_boot.entries import (
    UKI_FILE,
    EntryName,
    parse_entry,
    parse_name,
    render_entry,
    slot_options,
)
from osbuilder.node.bootfs import (
    ChooserBase,
    SlotMounter,
    fat_write,
    stage_slot_files,
)
from osbuilder.node.sysinfo import os_release
from osbuilder.shared import pe
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import fsync_dir
from osbuilder.shared.layout import BOOT_TRIES, SLOT_DIR, SLOTS


class Chooser(ChooserBase):
    def __init__(self, esp: Path, booted: str, mount_slot: SlotMounter | None = None,
                 tries: int = BOOT_TRIES) -> None:
        super().__init__(esp, booted, mount_slot, tries)
        self.esp = esp
        self.entries = esp / "loader/entries"

    def _files(self, slot: str) -> list[tuple[EntryName, Path]]:
        found = []
        for p in sorted(self.entries.glob("osb-*.conf")):
            name = parse_name(p.name)
            if name is not None and name.slot == slot:
                found.append((name, p))
        return found

    def entry(self, slot: str) -> tuple[EntryName, Path] | None:
        """The slot's entry; of several (a power cut between write and clean-up) the one
        systemd-boot would prefer: highest priority."""
        self._check(slot)
        files = self._files(slot)
        return max(files, key=lambda f: self._priority(f[1])) if files else None

    @staticmethod
    def _priority(path: Path) -> int:
        try:
            return int(parse_entry(path.read_text()).get("version", "0"))
        except (ValueError, OSError):
            return 0

    def tries_left(self, slot: str) -> int | None:
        """None when blessed (known good) or without entry; else boots left before fallback."""
        e = self.entry(slot)
        return e[0].tries_left if e else None

    def state(self, slot: str) -> str:
        e = self.entry(slot)
        return "bad" if e is None or e[0].bad else "good"

    def primary(self) -> str | None:
        """What systemd-boot will boot next: tries left first, then highest priority."""
        best: tuple[bool, int, str] | None = None
        for slot in SLOTS:
            e = self.entry(slot)
            if e is None:
                continue
            key = (not e[0].bad, self._priority(e[1]), slot)
            if best is None or key > best:
                best = key
        return best[2] if best else None

    def _options(self, slot: str) -> str:
        for s in (self.booted, *SLOTS):
            e = self.entry(s)
            options = parse_entry(e[1].read_text()).get("options") if e else None
            if options is not None:
                return slot_options(options, slot)
        raise OsbError(f"{self.entries}: no osbuilder boot entry to take kernel options from "
                       f"(a node that boots signed UKIs needs slot {slot}'s UKI staged first)")

    def uki(self, slot: str) -> Path:
        return self.esp / SLOT_DIR / slot / UKI_FILE

    def _uki_version(self, slot: str) -> str:
        with self.uki(slot).open("rb") as f:
            osrel = pe.read_section(f, pe.sections(f, str(self.uki(slot))), ".osrel")
        return os_release(osrel.rstrip(b"\0").decode(errors="replace")).get("IMAGE_VERSION",
                                                                            "unknown")

    def _stage_kernel(self, slot: str) -> str:
        """Copy the slot's kernel and initrd to the ESP; returns the slot's OS version."""
        assert self.mount_slot is not None, "set_primary needs a slot mounter"
        return stage_slot_files(self.mount_slot, slot, self.esp / SLOT_DIR / slot)

    def version(self, slot: str) -> str | None:
        """The slot's OS version, from its entry's title ("osbuilder 1.1.0 (slot b)")."""
        e = self.entry(slot)
        words = parse_entry(e[1].read_text()).get("title", "").split() if e else []
        return words[1] if len(words) > 1 else None

    def set_primary(self, slot: str) -> None:
        self._check(slot)
        old = self.entry(slot)
        uki = self.uki(slot).is_file()
        os_version = self._uki_version(slot) if uki else self._stage_kernel(slot)
        priority = max((self._priority(p) for s in SLOTS for _, p in self._files(s)),
                       default=0) + 1
        # a blessed entry stays blessed (rollback to a known-good slot); anything else
        # (freshly written, or failed before) gets a fresh count of tries
        name = old[0] if old and old[0].tries_left is None else EntryName(slot, self.tries)
        fat_write(self.entries / name.filename,
                  render_entry(slot, os_version, priority,
                               None if uki else self._options(slot)).encode())
        self._drop_others(slot, keep=name.filename)

    def set_state(self, slot: str, good: bool) -> None:
        e = self.entry(slot)
        if e is None:
            if good:
                raise OsbError(f"slot {slot} has no boot entry: it cannot be marked good")
            return
        name, path = e
        new = EntryName(slot, None) if good else EntryName(slot, 0, name.tries_done)
        if new.filename != path.name:
            os.replace(path, self.entries / new.filename)
            fsync_dir(self.entries)
        self._drop_others(slot, keep=new.filename)
        if not good and self.uki(slot).is_file():
            # RAUC marks a slot bad before it writes it: the old UKI (the old root hash)
            # must not outlive the old root; the bundle's hook stages the new one. After
            # the entry: an entry whose UKI is gone sorts last, it is never the default
            self.uki(slot).unlink()
            fsync_dir(self.uki(slot).parent)

    def _drop_others(self, slot: str, keep: str) -> None:
        gone = False
        for _, p in self._files(slot):
            if p.name != keep:
                p.unlink()
                gone = True
        if gone:
            fsync_dir(self.entries)
