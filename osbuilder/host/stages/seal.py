"""Stage seal: identity (os-release), the image manifest, and removal of per-node state.

Nothing that must differ between nodes may ship in the image: machine-id is empty,
SSH host keys are generated on first boot, the D-Bus machine id is a link.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from osbuilder import __version__
from osbuilder.host import git_revision as source
from osbuilder.host.context import BuildContext
from osbuilder.shared.run import output

MANIFEST = "usr/share/osbuilder/manifest.json"
# mount points that the read-only root must already have
MOUNT_POINTS = ("data", "boot/efi")


def os_release(ctx: BuildContext) -> str:
    b, o = ctx.board, ctx.options
    fields = {
        "PRETTY_NAME": f"osbuilder {o.version} ({b.name})",
        "NAME": "osbuilder",
        "ID": "osbuilder",
        "ID_LIKE": "debian",
        "VERSION": o.version,
        "VERSION_ID": o.version,
        "VERSION_CODENAME": b.suite,
        "VARIANT_ID": b.name,
        "IMAGE_ID": f"osbuilder-{b.name}",
        "IMAGE_VERSION": o.version,
        "BUILD_ID": str(o.source_date_epoch),
        "HOME_URL": "https://osbuilder.io/",
    }
    return "".join(f'{k}="{v}"\n' for k, v in fields.items())


def package_list(rootfs: Path) -> list[dict[str, str]]:
    text = output(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                   "-f", "${Package}\t${Version}\t${Architecture}\n"])
    rows = [line.split("\t") for line in text.splitlines() if line]
    return [{"name": n, "version": v, "arch": a} for n, v, a in sorted(rows)]


def manifest(ctx: BuildContext) -> dict[str, Any]:
    assert ctx.k3s is not None
    return {
        "image": {"name": ctx.basename, "version": ctx.options.version,
                  "build_id": str(ctx.options.source_date_epoch)},
        "board": ctx.board.name,
        "arch": ctx.board.arch,
        "suite": ctx.board.suite,
        "kernel": ctx.kernel_version,
        "k3s": {"version": ctx.k3s.version, "sha256": ctx.k3s.sha256,
                "airgap_images": ctx.k3s.airgap_images is not None},
        "osbuilder": {"version": __version__, "git_revision": source.revision()},
        "packages": package_list(ctx.rootfs),
        "trust": {"secure_boot": ctx.trust.uki, "verity": ctx.trust.verity,
                  "encryption": ctx.trust.encryption},
    }


def seal(ctx: BuildContext) -> None:
    r = ctx.rootfs
    (r / "usr/lib/os-release").write_text(os_release(ctx))
    data = manifest(ctx)
    (r / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    (r / MANIFEST).write_text(text)
    (ctx.work / f"{ctx.basename}.manifest.json").write_text(text)
    (r / "etc/machine-id").write_text("")
    dbus_id = r / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    for key in (r / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for d in MOUNT_POINTS:
        (r / d).mkdir(parents=True, exist_ok=True)
    # raspi-firmware's kernel hooks copy kernel, initrd and dtbs into /boot/firmware;
    # the bootloader stage fills the boot partition itself, so drop that copy and point
    # the Pi's usual path at the boot partition (config.txt, config.yaml)
    firmware = r / "boot/firmware"
    if firmware.is_dir() and not firmware.is_symlink():
        shutil.rmtree(firmware)
        firmware.symlink_to("efi")
    # /usr never changes under a booted slot: tell ConditionNeedsUpdate= units (ldconfig,
    # journal catalog, ...) that /etc and /var are current, or they run on every first boot
    stamp = f"TIMESTAMP_NSEC={ctx.options.source_date_epoch * 10**9}\n"
    for d in ("etc", "var"):
        (r / d / ".updated").write_text(stamp)
    ctx.progress.say(f"    {len(data['packages'])} packages, k3s {data['k3s']['version']}")
