"""Stage bootloader: fill the boot partition (staged as a folder) for the board's adapter,
plus the user's config.yaml when one was given."""

from __future__ import annotations

import shutil

from osbuilder.agent.config import parse
from osbuilder.agent.sources import load_yaml_mapping
from osbuilder.bootloaders import systemd_boot, uboot
from osbuilder.context import BuildContext

ADAPTERS = {"systemd-boot": systemd_boot.stage_boot_files, "u-boot": uboot.stage_boot_files}


def check_node_config(text: str, source: str) -> None:
    """The node's own check, so a bad config fails the build, not the first boot."""
    parse(load_yaml_mapping(text, f"--config {source}"), f"--config {source}")


def stage_boot_partition(ctx: BuildContext) -> None:
    ctx.esp.mkdir()
    ADAPTERS[ctx.board.bootloader](ctx)
    cfg = ctx.options.config
    if cfg is not None:
        check_node_config(cfg.read_text(), str(cfg))
        shutil.copyfile(cfg, ctx.esp / "config.yaml")
