"""Which slot chooser this node has: the image names its bootloader adapter in
/usr/share/osbuilder/bootloader, each with its own state on the boot partition."""

from __future__ import annotations

from typing import Protocol

from osbuilder.agent.paths import AgentPaths
from osbuilder.agent.upgrade.bootfs import SlotMounter
from osbuilder.agent.upgrade.systemd_boot import SystemdBootChooser
from osbuilder.agent.upgrade.uboot import UBootChooser
from osbuilder.bootloaders.uboot_env import ENV_FILE
from osbuilder.errors import OsbError


class SlotChooser(Protocol):
    booted: str

    def tries_left(self, slot: str) -> int | None: ...
    def state(self, slot: str) -> str: ...
    def version(self, slot: str) -> str | None: ...
    def primary(self) -> str | None: ...
    def set_primary(self, slot: str) -> None: ...
    def set_state(self, slot: str, good: bool) -> None: ...


def bootloader_kind(paths: AgentPaths) -> str:
    try:
        return paths.bootloader_file.read_text().strip()
    except FileNotFoundError:
        return "systemd-boot"


def chooser(paths: AgentPaths, booted: str, mount_slot: SlotMounter | None = None
            ) -> SlotChooser:
    kind = bootloader_kind(paths)
    if kind == "systemd-boot":
        return SystemdBootChooser(paths.boot_dir, booted, mount_slot)
    if kind == "u-boot":
        return UBootChooser(paths.boot_dir, booted, mount_slot)
    raise OsbError(f"{paths.bootloader_file}: unknown bootloader {kind!r} "
                   "(expected systemd-boot or u-boot)")


def has_state(paths: AgentPaths) -> bool:
    """Whether the boot partition holds this chooser's state (it does on every osbuilder
    disk; not in a test tree or a foreign disk)."""
    kind = bootloader_kind(paths)
    return (paths.boot_dir / ("loader/entries" if kind == "systemd-boot" else ENV_FILE)).exists()
