"""The table of boot loaders: every other module asks it, none compares names.

One package per boot loader, each with the same parts:
  build     (host side) `stage_boot_files(ctx)`: fills the boot partition at build time
  chooser   (node side) `Chooser`: RAUC's custom backend, picks and counts the next slot
  the rest  (shared) the state it keeps on the boot partition, read and written by both
Each side imports its own part through `part()`, so the node never imports a build module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from osbuilder.shared.errors import OsbError


@dataclass(frozen=True)
class BootLoader:
    name: str  # as board files spell it (`bootloader:`)
    package: str  # osbuilder.bootloaders.<package>
    # boots through UEFI firmware from an ESP: what ISO, AMI and live installs need
    uefi: bool
    # the file or folder on the boot partition that holds its A/B state
    state_path: str

    def part(self, name: str) -> ModuleType:
        """Its `build` (only the host asks) or its `chooser` (only the node asks)."""
        return importlib.import_module(f"{__name__}.{self.package}.{name}")


BOOTLOADERS: dict[str, BootLoader] = {b.name: b for b in (
    BootLoader("systemd-boot", "systemd_boot", uefi=True, state_path="loader/entries"),
    # uboot.env_file.ENV_FILE; spelled out so this table imports nothing of a package
    BootLoader("u-boot", "uboot", uefi=False, state_path="osbuilder.env"),
)}


def bootloader(name: str) -> BootLoader:
    try:
        return BOOTLOADERS[name]
    except KeyError:
        raise OsbError(f"unknown bootloader {name!r} (known: {', '.join(BOOTLOADERS)})"
                       ) from None
