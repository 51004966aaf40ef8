"""Output formats: one module per format, each turning the assembled build into files.

This table says which formats exist and which boards can have each, from the boot loader
table (UEFI or not) and the arch table: `osbuilder boards` lists it, and `build` checks a
board/format pair before any work (a 30-minute arm64 rootfs must not end in "no").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from osbuilder.bootloaders import bootloader
from osbuilder.host.boards import Board
from osbuilder.shared.cli_base import did_you_mean
from osbuilder.shared.errors import OsbError, UsageError


def _uefi(board: Board) -> list[str]:
    why = []
    if not bootloader(board.bootloader).uefi:
        why.append(f"its boot loader {board.bootloader} does not boot through UEFI")
    if board.arch_facts.uefi is None:
        why.append(f"arch {board.arch} has no UEFI")
    return why


def _ami(board: Board) -> list[str]:
    from osbuilder.host.formats.ami import why_not

    return why_not(board)


@dataclass(frozen=True)
class Format:
    name: str
    what: str
    why_not: Callable[[Board], list[str]] = lambda _: []
    tools: dict[str, str] = field(default_factory=dict)  # host tool -> Debian package


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("img", "raw disk image (flash it, or boot it in a VM)"),
    Format("qcow2", "QEMU's disk format (KVM, Proxmox, OpenStack)"),
    Format("ami", "raw disk + .ami.json for `osbuilder publish ami` (EC2: UEFI, cloud-init)",
           _ami),
    # the live ISO boots systemd-boot from an El Torito ESP; the installer writes the
    # board's UEFI layout
    Format("iso", "hybrid UEFI live system and installer (CD, DVD or USB stick)", _uefi,
           {"xorriso": "xorriso"}),
    # network boot through iPXE or GRUB in UEFI firmware; no device trees are served,
    # and installing from the live system needs the UEFI install plan
    Format("pxe", "network boot files (kernel, initrd, squashfs, iPXE script) for "
                  "`osbuilder serve-pxe`", _uefi),
)}


def buildable(board: Board) -> tuple[str, ...]:
    """Every format this board can be built as, in table order."""
    return tuple(n for n, f in FORMATS.items() if not f.why_not(board))


def check_names(names: tuple[str, ...]) -> None:
    for n in names:
        if n not in FORMATS:
            raise UsageError(f"--format {n}: unknown format{did_you_mean(n, FORMATS)} "
                             f"(formats: {', '.join(FORMATS)})")


def check_formats(board: Board, names: tuple[str, ...]) -> None:
    """Raise at once for an unknown format or one this board cannot have."""
    check_names(names)
    for n in names:
        why = FORMATS[n].why_not(board)
        if why:
            raise OsbError(f"--format {n}: board {board.name} cannot be built as {n}: "
                           f"{'; '.join(why)} (its formats: {', '.join(buildable(board))})")
