"""Stage bootloader: fill the boot partition (staged as a folder) for the board's adapter,
plus the user's config.yaml when one was given."""

from __future__ import annotations

import shutil

from osbuilder.bootloaders import bootloader
from osbuilder.host.context import BuildContext
from osbuilder.shared.nodeconfig.loader import check_file


def stage_boot_partition(ctx: BuildContext) -> None:
    ctx.esp.mkdir()
    bootloader(ctx.board.bootloader).part("build").stage_boot_files(ctx)
    cfg = ctx.options.config
    if cfg is not None:
        check_file(cfg, f"--config {cfg}")
        shutil.copyfile(cfg, ctx.esp / "config.yaml")
