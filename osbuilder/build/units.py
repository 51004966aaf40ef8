"""Stage units: enable/disable systemd units as the overlay's preset file lists them."""

from __future__ import annotations

from osbuilder.chroot import chroot_run
from osbuilder.context import BuildContext

PRESET = "usr/lib/systemd/system-preset/80-osbuilder.preset"


def apply_presets(ctx: BuildContext) -> None:
    for line in (ctx.rootfs / PRESET).read_text().splitlines():
        verb, _, unit = line.partition(" ")
        if verb in ("enable", "disable") and unit.strip():
            chroot_run(ctx.rootfs, ["systemctl", verb, unit.strip()])
