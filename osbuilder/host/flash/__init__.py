"""`osbuilder flash IMAGE DEVICE`: check the target is safe, write, sync, read back and
compare, then put the node's config.yaml on the boot partition.

Order matters: the config is validated and the device checked before a byte is written;
the config goes on only after the image verified, so a failed flash never looks usable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osbuilder.host.flash.bootpart import write_config
from osbuilder.host.flash.target_checks import PROC, SYS, check_target
from osbuilder.host.flash.writer import verify, write_image
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import OsbError


@dataclass(frozen=True)
class FlashResult:
    size: int
    sha256: str
    config_offset: int | None


def flash(image: Path, device: Path, progress: Progress, config: Path | None = None,
          force: bool = False, sys_root: Path = SYS, proc_root: Path = PROC) -> FlashResult:
    from osbuilder.shared.nodeconfig.loader import check_file

    if not image.is_file():
        raise OsbError(f"IMAGE {image}: no such file (an .img or .img.zst from "
                       "`osbuilder build`)")
    if config is not None:
        if not config.is_file():
            raise OsbError(f"--config {config}: no such file")
        check_file(config, f"--config {config}")
    dev = check_target(device, force, sys_root, proc_root)
    what = f"/dev/{dev.name} ({dev.size_bytes / 1e9:.1f} GB)" if dev else "file"
    progress.say(f"flashing {image} to {device}: {what}")
    written = write_image(image, device, progress, dev.size_bytes if dev else None)
    got = verify(device, written, progress)
    progress.say(f"    verified {written.size / 1e6:.1f} MB, sha256 {got}")
    offset = None
    if config is not None:
        offset = write_config(device, config)
        progress.say(f"    {config} -> config.yaml on the boot partition")
    return FlashResult(written.size, got, offset)
