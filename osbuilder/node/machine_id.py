"""The node's machine-id kept on the data partition, so it survives slot switches.

/etc is rebuilt each boot (a tmpfs layer over the read-only root), and systemd cannot
write /etc/machine-id through a bind mount: the initramfs copies the saved id into the
tmpfs layer, and on the first boot `boot` saves the id systemd generated. Done here rather
than in a unit of its own: that unit waited for first-boot-complete.target (half a minute
under emulation) and osbuilder-boot waited for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from osbuilder.node.sysinfo import read
from osbuilder.shared.file_writes import write_atomic

ID = re.compile(r"[0-9a-f]{32}\n?")


def save_machine_id(root: Path, is_mount: Callable[[Path], bool] = os.path.ismount) -> bool:
    """Copy /etc/machine-id to /data/etc/machine-id once; True if it was written. Nothing
    when /data is not mounted (the live installer), when an id is already saved, or when
    /etc holds no id yet (systemd writes it before any unit runs)."""
    saved = root / "data/etc/machine-id"
    if not is_mount(root / "data") or read(str(saved)):
        return False
    current = read(str(root / "etc/machine-id"))
    if not ID.fullmatch(current):
        return False
    return write_atomic(saved, current if current.endswith("\n") else current + "\n", 0o444)

