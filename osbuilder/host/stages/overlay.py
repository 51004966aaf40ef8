"""Stage overlay: lay overlays/{common,<partition table>,<bootloader>,<package set>,<arch>,
<board>} over the rootfs; render *.j2.

Later layers win. Templates see `board`, `image`, `labels`, `root_devices`, `persistent`,
`uboot_env` and `live`; an undefined name is an error, not an empty string.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import jinja2

from osbuilder.bootloaders.uboot import env_file as uboot_env
from osbuilder.host.boards import Board
from osbuilder.host.context import BuildContext
from osbuilder.shared import live
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import (
    LABEL_BOOT,
    LABEL_DATA,
    SLOTS,
    root_device_path,
    root_label,
)

OVERLAYS_DIR = Path(__file__).resolve().parents[1] / "overlays"

# Folders under /etc that survive reboots and upgrades (bind-mounted from the data partition
# by the initramfs; machine-id is kept there too); the rest of /etc is rebuilt each boot
# from the image and the node config. /etc/rancher holds k3s config and node password.
PERSISTENT_ETC = ("rancher",)


def template_vars(ctx: BuildContext) -> dict[str, Any]:
    return {
        "board": ctx.board,
        "image": {
            "version": ctx.options.version,
            "build_id": str(ctx.options.source_date_epoch),
            "kernel_version": ctx.kernel_version,
        },
        "labels": {"boot": LABEL_BOOT, "data": LABEL_DATA,
                   **{f"root_{s}": root_label(s) for s in SLOTS}},
        # /dev/disk/by-* path of each slot's root (by name on GPT, by number on MBR)
        "root_devices": {s: root_device_path(ctx.board.partition_table, s) for s in SLOTS},
        "persistent": PERSISTENT_ETC,
        "uboot_env": {"file": uboot_env.ENV_FILE, "size": f"{uboot_env.ENV_SIZE:#x}"},
        "live": live.template_vars(),
    }


def render(template: str, variables: dict[str, Any], name: str) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    try:
        return env.from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise OsbError(f"overlay template {name}: {exc}") from exc


def layers(board: Board, root: Path = OVERLAYS_DIR) -> list[Path]:
    """common; the partition table's and the boot loader's (mbr, u-boot); one per package
    set that has a folder (its packages' configuration, e.g. overlays/cloud-init); then
    the arch, then the board."""
    names = ["common", board.partition_table, board.bootloader, *board.package_sets,
             board.arch, board.name]
    return [root / n for n in names if (root / n).is_dir()]


def overlay_file(board: Board, rel: Path) -> Path | None:
    """The plain file the overlays leave at `rel` in the image (the last layer's)."""
    found = [f for f in (layer / rel for layer in layers(board)) if f.is_file()]
    return found[-1] if found else None


def apply_layer(layer: Path, dest_root: Path, variables: dict[str, Any]) -> list[Path]:
    """Copy one layer; returns the image paths written (relative to dest_root)."""
    written = []
    for src in sorted(layer.rglob("*")):
        rel = src.relative_to(layer)
        if src.is_dir():
            (dest_root / rel).mkdir(parents=True, exist_ok=True)
            continue
        if src.suffix == ".j2":
            rel = rel.with_suffix("")
        dest = dest_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():  # e.g. Debian's /etc/os-release link: replace, don't follow
            dest.unlink()
        if src.suffix == ".j2":
            dest.write_text(render(src.read_text(), variables, str(src)))
        else:
            shutil.copyfile(src, dest)
        os.chmod(dest, 0o755 if os.access(src, os.X_OK) else 0o644)
        written.append(rel)
    return written


def apply_overlays(ctx: BuildContext) -> None:
    variables = template_vars(ctx)
    for layer in layers(ctx.board):
        n = len(apply_layer(layer, ctx.rootfs, variables))
        ctx.progress.say(f"    {layer.relative_to(OVERLAYS_DIR.parent)}: {n} files")
