"""Stage units: create sysusers.d users; enable/disable units as the preset file lists."""

from __future__ import annotations

from osbuilder.chroot import chroot_run
from osbuilder.context import BuildContext

PRESET = "usr/lib/systemd/system-preset/80-osbuilder.preset"


def apply_presets(ctx: BuildContext) -> None:
    # users declared in sysusers.d (the default user osb) exist in the image's /etc
    chroot_run(ctx.rootfs, ["systemd-sysusers"])
    for line in (ctx.rootfs / PRESET).read_text().splitlines():
        verb, _, unit = line.partition(" ")
        if verb in ("enable", "disable") and unit.strip():
            chroot_run(ctx.rootfs, ["systemctl", verb, unit.strip()])
