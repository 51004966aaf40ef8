"""Stage bootloader: fill the boot partition (staged as a folder) for the board's adapter,
plus the user's config.yaml when one was given."""

from __future__ import annotations

import shutil

import yaml

from osbuilder.bootloaders import systemd_boot
from osbuilder.context import BuildContext
from osbuilder.errors import OsbError

ADAPTERS = {"systemd-boot": systemd_boot.stage_boot_files}


def check_node_config(path_text: str, source: str) -> None:
    try:
        data = yaml.safe_load(path_text)
    except yaml.YAMLError as exc:
        raise OsbError(f"--config {source}: not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise OsbError(f"--config {source}: expected a mapping of keys at the top level")


def stage_boot_partition(ctx: BuildContext) -> None:
    ctx.esp.mkdir()
    ADAPTERS[ctx.board.bootloader](ctx)
    cfg = ctx.options.config
    if cfg is not None:
        check_node_config(cfg.read_text(), str(cfg))
        shutil.copyfile(cfg, ctx.esp / "config.yaml")
