"""Stage units: create sysusers.d users; enable/disable units as the preset files list
(overlay layers each bring their own, e.g. the MBR layer's data partition growth)."""

from __future__ import annotations

from osbuilder.chroot import chroot_run
from osbuilder.context import BuildContext

PRESETS = "usr/lib/systemd/system-preset"


def apply_presets(ctx: BuildContext) -> None:
    # users declared in sysusers.d (the default user osb) exist in the image's /etc
    chroot_run(ctx.rootfs, ["systemd-sysusers"])
    for preset in sorted((ctx.rootfs / PRESETS).glob("*-osbuilder*.preset")):
        for line in preset.read_text().splitlines():
            verb, _, unit = line.partition(" ")
            if verb in ("enable", "disable") and unit.strip():
                chroot_run(ctx.rootfs, ["systemctl", verb, unit.strip()])
