"""Raspberry Pi boot firmware on the boot partition: the GPU firmware files from Debian's
raspi-firmware, config.txt from the board file, and the device trees the firmware hands to
the program it starts (U-Boot). The firmware reads only the first FAT partition of an MBR
disk; everything after `kernel=` is the boot loader's business.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.shared.errors import OsbError

FIRMWARE_DIR = "usr/lib/raspi-firmware"


def config_txt(ctx: BuildContext, kernels: dict[str, str]) -> str:
    """kernels: config.txt filter (all, pi2, pi3, ...) -> the file the firmware starts."""
    b = ctx.board
    assert b.raspi is not None
    lines = [
        f"# osbuilder {ctx.options.version} ({b.name}), from the board file; read by the Pi",
        "# firmware, which starts U-Boot; U-Boot's boot.scr picks the slot (A/B).",
        "[all]",
    ]
    if "all" in kernels:
        lines.append(f"kernel={kernels['all']}")
    lines += [f"{k}={v}" for k, v in b.raspi.config]
    lines += [f"dtoverlay={o}" for o in b.raspi.dtoverlays]
    per_model = [(f, name) for f, name in kernels.items() if f != "all"]
    for flt, name in per_model:
        lines += [f"[{flt}]", f"kernel={name}"]
    if per_model:
        lines.append("[all]")  # later additions by hand apply to every model again
    return "\n".join(lines) + "\n"


def stage_firmware(ctx: BuildContext, kernels: dict[str, str]) -> None:
    b = ctx.board
    assert b.raspi is not None
    src = ctx.rootfs / FIRMWARE_DIR
    missing = [f for f in b.raspi.firmware if not (src / f).is_file()]
    if missing:
        raise OsbError(f"{b.source}: at raspi.firmware: {', '.join(missing)} not in "
                       f"/{FIRMWARE_DIR} of the rootfs (package raspi-firmware, component "
                       "non-free-firmware)")
    for name in b.raspi.firmware:
        shutil.copyfile(src / name, ctx.esp / name)
    overlays = [o.split(",")[0] for o in b.raspi.dtoverlays]
    for name in overlays:
        dtbo = src / "overlays" / f"{name}.dtbo"
        if not dtbo.is_file():
            available = sorted(p.stem for p in (src / "overlays").glob("*.dtbo"))
            raise OsbError(f"{b.source}: at raspi.dtoverlays: {name}.dtbo is not in Debian's "
                           f"raspi-firmware (it has: {', '.join(available) or 'none'})")
        (ctx.esp / "overlays").mkdir(exist_ok=True)
        shutil.copyfile(dtbo, ctx.esp / "overlays" / dtbo.name)
    (ctx.esp / "config.txt").write_text(config_txt(ctx, kernels))
    # with upstream_kernel=1 the firmware looks for the upstream names at the top level
    kdir = ctx.rootfs / f"usr/lib/linux-image-{ctx.kernel_version}"
    for dtb in b.dtbs:
        if (kdir / dtb).is_file():
            shutil.copyfile(kdir / dtb, ctx.esp / Path(dtb).name)
