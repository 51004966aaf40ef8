"""Put the node's config.yaml on the boot partition of a flashed disk, without mounting:
find OSB_BOOT in the partition table (GPT name, or the FAT label on the Pi's MBR) and
copy with mtools at the partition's byte offset."""

from __future__ import annotations

import json
import os
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import LABEL_BOOT
from osbuilder.shared.run import output, run


def boot_partition_offset(disk: Path) -> int:
    table = json.loads(output(["sfdisk", "--json", disk]))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for p in table.get("partitions", []):
        start = int(p["start"]) * sector
        if table["label"] == "gpt":
            if p.get("name") == LABEL_BOOT:
                return start
        elif fat_label(disk, start) == LABEL_BOOT:
            return start
    raise OsbError(f"{disk}: no {LABEL_BOOT} partition in its {table['label']} partition "
                   "table (is this an osbuilder image?)")


def fat_label(disk: Path, offset: int) -> str:
    out = output(["blkid", "-p", "-o", "export", "-O", str(offset), disk], check=False)
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return fields.get("LABEL", "")


def write_config(disk: Path, config: Path) -> int:
    """Copy config to ::/config.yaml of OSB_BOOT (replacing one the image had); returns
    the partition's offset."""
    offset = boot_partition_offset(disk)
    run(["mcopy", "-o", "-i", f"{disk}@@{offset}", config, "::/config.yaml"])
    fd = os.open(disk, os.O_RDONLY)
    try:
        os.fsync(fd)  # mcopy closed without syncing a block device's cache
    finally:
        os.close(fd)
    return offset
