"""Format qcow2: the disk image for KVM, Proxmox and OpenStack (compressed clusters)."""

from __future__ import annotations

from osbuilder.host.context import Artifact, BuildContext
from osbuilder.shared.run import run


def write_qcow2(ctx: BuildContext) -> None:
    assert ctx.disk_image is not None
    out = ctx.disk_image.with_suffix(".qcow2")
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", ctx.disk_image, out])
    ctx.artifacts.append(Artifact("qcow2", out))
