"""The live system (ISO, USB stick, PXE) as the build, the initramfs and the agent share it.

A live boot runs the image's squashfs read-only with /data on a tmpfs (`boot=osblive`,
scripts/osblive in the initramfs); it installs to disk from there
(`osbuilder-agent install`). Pure names and kernel options, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

SLOT = "live"  # osb.slot= of a live boot: no disk slot is booted
ISO_LABEL = "OSB_LIVE"  # ISO 9660 volume id the initramfs looks for
MEDIUM_DIR = "/run/osbuilder/medium"  # the ISO, mounted by the initramfs
RAM_DIR = "/run/osbuilder/live"  # tmpfs holding a squashfs fetched over HTTP
RECORD = "/run/osbuilder/live-squashfs"  # path of the squashfs the root was mounted from
SQUASHFS_ON_MEDIUM = "osb/root.squashfs"
CONFIG_ON_MEDIUM = "osb/config.yaml"
# osb.mode=: install without install.device asks on the console; migrate turns a disk
# k3OS installed into an osbuilder disk in place (osbuilder-agent migrate-k3os)
MODES = ("live", "install", "migrate")
# Pulled in by the live kernel command line only (systemd.wants=, systemd-debug-generator(8)):
# a node's boot has no job of it (its unit says why that matters).
INSTALL_UNIT = "osbuilder-install.service"


def template_vars() -> dict[str, str]:
    """What the initramfs scripts (overlay templates) need to know."""
    return {"slot": SLOT, "default_label": ISO_LABEL, "medium": MEDIUM_DIR, "ram": RAM_DIR,
            "record": RECORD}


def kernel_options(source: str, mode: str, console: Sequence[str], extra: Sequence[str]
                   ) -> str:
    """Kernel options of a live boot; source is the ISO label or the squashfs's http:// URL."""
    if mode not in MODES:
        raise ValueError(f"live mode {mode!r}: expected one of {', '.join(MODES)}")
    return " ".join(["boot=osblive", f"osb.live={source}", f"osb.slot={SLOT}",
                     f"osb.mode={mode}", "ro", "systemd.gpt_auto=0",
                     f"systemd.wants={INSTALL_UNIT}", *(f"console={c}" for c in console),
                     *extra])
