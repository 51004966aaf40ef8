"""Which slot chooser this node has: the image names its boot loader in
/usr/share/osbuilder/bootloader (osbuilder.bootloaders), each with its own state on the
boot partition."""

from __future__ import annotations

from typing import Protocol, cast

from osbuilder.bootloaders import BootLoader, bootloader
from osbuilder.node.bootfs import SlotMounter
from osbuilder.node.paths import AgentPaths


class SlotChooser(Protocol):
    booted: str

    def tries_left(self, slot: str) -> int | None: ...
    def state(self, slot: str) -> str: ...
    def version(self, slot: str) -> str | None: ...
    def primary(self) -> str | None: ...
    def set_primary(self, slot: str) -> None: ...
    def set_state(self, slot: str, good: bool) -> None: ...


def node_bootloader(paths: AgentPaths) -> BootLoader:
    try:
        name = paths.bootloader_file.read_text().strip()
    except FileNotFoundError:
        name = "systemd-boot"  # images from before the file existed were all UEFI
    return bootloader(name)


def chooser(paths: AgentPaths, booted: str, mount_slot: SlotMounter | None = None
            ) -> SlotChooser:
    chooser_class = node_bootloader(paths).part("chooser").Chooser
    return cast(SlotChooser, chooser_class(paths.boot_dir, booted, mount_slot))


def has_state(paths: AgentPaths) -> bool:
    """Whether the boot partition holds this chooser's state (it does on every osbuilder
    disk; not in a test tree or a foreign disk)."""
    return (paths.boot_dir / node_bootloader(paths).state_path).exists()
