"""osbuilder: immutable A/B edge OS images with k3s, built from Debian.

The package is split by the machine its code runs on:
  osbuilder.host         the workstation: CLI, boards, build stages, formats, publish,
                         flash, PXE server, QEMU runner
  osbuilder.node         the node (`osbuilder-agent`): config at boot, upgrades, fleet,
                         installer
  osbuilder.shared       what both import: errors, run(), disk layout, architecture facts,
                         the node config (model, loader, appliers), schemas
  osbuilder.bootloaders  one package per boot loader: its `build` (host side), its
                         `chooser` (node side); its state formats are shared
The image carries the node and shared sides only (stage node-package).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

__version__ = "0.1.0"

# Module name pattern -> the side it runs on; the first match wins. The node-package
# stage and the import-boundary test both read this table.
SIDES: tuple[tuple[str, str], ...] = (
    ("osbuilder.__main__", "host"),
    ("osbuilder.host", "host"),
    ("osbuilder.host.*", "host"),
    ("osbuilder.bootloaders.*.build", "host"),
    ("osbuilder.bootloaders.*.build.*", "host"),
    ("osbuilder.node", "node"),
    ("osbuilder.node.*", "node"),
    ("osbuilder.bootloaders.*.chooser", "node"),
    ("osbuilder", "shared"),
    ("osbuilder.*", "shared"),
)


def side_of(module: str) -> str:
    """host, node or shared for a module's dotted name."""
    return next(side for pattern, side in SIDES if fnmatchcase(module, pattern))
