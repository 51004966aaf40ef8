"""Stage bootloader: fill the boot partition (staged as a folder) for the board's adapter,
plus the user's config.yaml when one was given, and the build's verdict on the config a
first boot will merge (nodeconfig/judged.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from osbuilder.bootloaders import bootloader
from osbuilder.host.boards import Board
from osbuilder.host.context import BuildContext
from osbuilder.host.stages.overlay import overlay_file
from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.judged import BUILD_VERDICT, verdict_record
from osbuilder.shared.nodeconfig.loader import check_file, load
from osbuilder.shared.nodeconfig.source_text import read_source
from osbuilder.shared.nodeconfig.sources import boot_partition

# where the agent reads the image's default config (osbuilder.node.paths.AgentPaths)
IMAGE_DEFAULT = Path("usr/share/osbuilder/config.default.yaml")


def stage_boot_partition(ctx: BuildContext) -> None:
    ctx.esp.mkdir()
    bootloader(ctx.board.bootloader).part("build").stage_boot_files(ctx)
    cfg = ctx.options.config
    if cfg is not None:
        check_file(cfg, f"--config {cfg}")
        shutil.copyfile(cfg, ctx.esp / "config.yaml")
    write_first_boot_verdict(ctx.board, ctx.esp)


def write_first_boot_verdict(board: Board, esp: Path) -> None:
    """Beside config.yaml, so that the first boot, like every later one, recognises a
    valid config without starting the validator."""
    record = first_boot_verdict(board, esp)
    if record is not None:
        (esp / BUILD_VERDICT).write_text(json.dumps(record, sort_keys=True) + "\n")


def first_boot_verdict(board: Board, esp: Path) -> dict[str, str] | None:
    """The record of the build's verdict on the config a first boot merges from the
    image default and the staged boot partition `esp`, when it is valid (else None).
    Merged without the node's facts and kernel command line: where those change the
    config, the record no longer matches and the node judges the config itself."""
    default = overlay_file(board, IMAGE_DEFAULT)
    try:
        sources = [read_source(default, "image")] if default else []
        verdict = load(sources + boot_partition(esp))  # judged with the image's accounts
    except OsbError:  # unreadable: the node will say so itself
        return None
    return verdict_record(verdict.merged) if verdict.config is not None else None
