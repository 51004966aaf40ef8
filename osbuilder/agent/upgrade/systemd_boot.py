"""The systemd-boot slot chooser on the node: RAUC's custom bootloader backend for UEFI boards.

State lives only in the ESP's entry file names (boot counting, as in the Boot Loader
Specification) and `version` priorities (osbuilder.bootloaders.bls), never in EFI variables:
EC2 and some NUC firmware lose or refuse them. Every change is one file written beside
its target and renamed over it, so a power cut leaves the old or the new entry:
- set_primary(b): stage b's kernel and initrd on the ESP, then write `osb-b+3.conf` with the
  highest priority, then drop b's older entry file. Until that rename the old primary boots.
- systemd-boot decrements the counter on each try; a counter at 0 sorts last (fallback).
- set_state(b, good) drops the counter (what systemd-bless-boot does after
  boot-complete.target); set_state(b, bad) sets it to 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from osbuilder.agent.sysinfo import os_release
from osbuilder.bootloaders.bls import (
    EntryName,
    parse_entry,
    parse_name,
    render_entry,
    slot_options,
)
from osbuilder.errors import OsbError
from osbuilder.layout import SLOTS

BOOT_TRIES = 3

# mounts a slot's root read-only and yields its path
SlotMounter = Callable[[str], AbstractContextManager[Path]]


def fat_write(path: Path, data: bytes) -> None:
    """Replace a file on FAT: temp file (not *.conf, so never read as an entry), fsync,
    rename, fsync the folder. FAT has no modes or owners, so nothing else is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SystemdBootChooser:
    def __init__(self, esp: Path, booted: str, mount_slot: SlotMounter | None = None,
                 tries: int = BOOT_TRIES) -> None:
        """mount_slot is needed by set_primary only (it reads the slot's kernel)."""
        self.esp = esp
        self.entries = esp / "loader/entries"
        self.booted = booted
        self.mount_slot = mount_slot
        self.tries = tries

    def _check(self, slot: str) -> None:
        if slot not in SLOTS:
            raise OsbError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")

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
            if e is not None:
                return slot_options(parse_entry(e[1].read_text())["options"], slot)
        raise OsbError(f"{self.entries}: no osbuilder boot entry to take kernel options from")

    def _stage_kernel(self, slot: str) -> str:
        """Copy the slot's kernel and initrd to the ESP; returns the slot's OS version."""
        dest = self.esp / "osb" / slot
        assert self.mount_slot is not None, "set_primary needs a slot mounter"
        with self.mount_slot(slot) as root:
            kernels = sorted((root / "boot").glob("vmlinuz-*"))
            if len(kernels) != 1:
                raise OsbError(f"slot {slot}: expected one kernel in /boot, found "
                               f"{len(kernels)}: the slot does not hold an osbuilder root")
            ver = kernels[0].name.removeprefix("vmlinuz-")
            for src, name in ((kernels[0], "vmlinuz"), (root / f"boot/initrd.img-{ver}",
                                                          "initrd.img")):
                data = src.read_bytes()
                target = dest / name
                if not (target.is_file() and target.read_bytes() == data):
                    fat_write(target, data)
            release = os_release((root / "usr/lib/os-release").read_text())
        return release.get("IMAGE_VERSION", "unknown")

    def set_primary(self, slot: str) -> None:
        self._check(slot)
        old = self.entry(slot)
        os_version = self._stage_kernel(slot)
        priority = max((self._priority(p) for s in SLOTS for _, p in self._files(s)),
                       default=0) + 1
        # a blessed entry stays blessed (rollback to a known-good slot); anything else
        # (freshly written, or failed before) gets a fresh count of tries
        name = old[0] if old and old[0].tries_left is None else EntryName(slot, self.tries)
        fat_write(self.entries / name.filename,
                  render_entry(slot, os_version, priority, self._options(slot)).encode())
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

    def _drop_others(self, slot: str, keep: str) -> None:
        gone = False
        for _, p in self._files(slot):
            if p.name != keep:
                p.unlink()
                gone = True
        if gone:
            fsync_dir(self.entries)
