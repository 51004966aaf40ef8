"""Boot Loader Specification type #1 entries as osbuilder writes them, one per slot.

Pure text and file-name logic shared by the build (first entry) and the node (upgrades).
systemd-boot sorts entries with the same `sort-key` by `version`, newest first, after
putting entries with no tries left at the end; the first one matching `default osb-*`
boots. So `version` here is the slot's boot priority, not the OS version (that is in the
title): the primary slot has the highest number, and a slot whose tries ran out sorts
last by itself, which is the automatic fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from osbuilder.shared.layout import root_label

SORT_KEY = "osbuilder"
ROOT_PREFIX = root_label("")  # OSB_ROOT_, the part every slot's root label shares
# loader.conf of an osbuilder ESP, written by the build and by `osbuilder-agent install`
LOADER_CONF = """\
# osbuilder: boot the slot entry of highest priority (its `version`) that still has tries
# left; press a key during start-up for the menu (both slots once an upgrade installed B).
default osb-*
timeout 0
editor no
"""
# the signed Unified Kernel Image of a slot, on the ESP under osb/<slot>/ (not under
# EFI/Linux/, where systemd-boot would list it a second time as a type #2 entry)
UKI_FILE = "uki.efi"


def loader_conf(enroll: str | None = None) -> str:
    """loader.conf; with `enroll`, systemd-boot enrolls the keys in loader/keys/auto/ on a
    machine in Secure Boot setup mode (loader.conf(5): secure-boot-enroll)."""
    return LOADER_CONF + (f"secure-boot-enroll {enroll}\n" if enroll else "")


# +LEFT or +LEFT-DONE before .conf, as in the Boot Loader Specification's boot counting
NAME_RE = re.compile(r"^osb-(?P<slot>[a-z])(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.conf$")


@dataclass(frozen=True)
class EntryName:
    slot: str
    tries_left: int | None  # None: no counter, the entry is blessed (known good)
    tries_done: int = 0

    @property
    def filename(self) -> str:
        if self.tries_left is None:
            return f"osb-{self.slot}.conf"
        done = f"-{self.tries_done}" if self.tries_done else ""
        return f"osb-{self.slot}+{self.tries_left}{done}.conf"

    @property
    def bad(self) -> bool:
        return self.tries_left == 0


def parse_name(name: str) -> EntryName | None:
    m = NAME_RE.match(name)
    if m is None:
        return None
    left = m.group("left")
    return EntryName(m.group("slot"), int(left) if left is not None else None,
                     int(m.group("done") or 0))


def slot_options(options: str, slot: str) -> str:
    """The kernel options of one slot rewritten for another: root label and slot names."""
    out = []
    for opt in options.split():
        key = opt.partition("=")[0]
        if key in ("osb.slot", "rauc.slot"):
            opt = f"{key}={slot}"
        elif opt.startswith(f"root=PARTLABEL={ROOT_PREFIX}"):
            opt = f"root=PARTLABEL={root_label(slot)}"
        out.append(opt)
    return " ".join(out)


def render_entry(slot: str, os_version: str, priority: int, options: str | None,
                 title: str | None = None) -> str:
    """The slot's entry: its kernel, initrd and options; or, with options None, its signed
    UKI (`efi`: any PE image, started through the firmware's LoadImage, so Secure Boot
    checks it; the UKI carries its own command line)."""
    boot = (f"efi /osb/{slot}/{UKI_FILE}\n" if options is None else
            f"linux /osb/{slot}/vmlinuz\ninitrd /osb/{slot}/initrd.img\noptions {options}\n")
    return (
        f"title osbuilder {os_version} ({title or f'slot {slot.upper()}'})\n"
        f"sort-key {SORT_KEY}\n"
        f"version {priority}\n"
        + boot
    )


def boots_uki(entry: dict[str, str]) -> bool:
    return "efi" in entry and "linux" not in entry


def parse_entry(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            out[key] = value.strip()
    return out
