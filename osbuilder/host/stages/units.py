"""Stage units: create sysusers.d users; enable/disable units as the preset files list
(overlay layers each bring their own, e.g. the MBR layer's data partition growth)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.host.chroot import chroot_run
from osbuilder.host.context import BuildContext

PRESETS = "usr/lib/systemd/system-preset"
UNIT_DIRS = ("usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system")


def apply_presets(ctx: BuildContext) -> None:
    # users declared in sysusers.d (the default user osb) exist in the image's /etc; with
    # SOURCE_DATE_EPOCH, not today, as /etc/shadow's last-change day (else two builds a
    # day apart differ)
    chroot_run(ctx.rootfs, ["systemd-sysusers"], env=ctx.env)
    verbs: dict[str, str] = {}  # unit -> enable/disable; a later preset file wins
    for preset in sorted((ctx.rootfs / PRESETS).glob("*-osbuilder*.preset")):
        for line in preset.read_text().splitlines():
            verb, _, unit = line.partition(" ")
            if verb in ("enable", "disable") and unit.strip():
                verbs[unit.strip()] = verb
    for verb in ("enable", "disable"):
        # a rootfs from a tarball or DIB may lack a unit the presets disable; one
        # systemctl per verb, as each costs seconds under qemu-user on foreign boards
        units = [u for u, v in verbs.items()
                 if v == verb and (verb == "enable" or unit_exists(ctx.rootfs, u))]
        if units:
            chroot_run(ctx.rootfs, ["systemctl", verb, *units], env=ctx.env)


def unit_exists(rootfs: Path, unit: str) -> bool:
    return any((rootfs / d / unit).exists() for d in UNIT_DIRS)
