"""Stage k3s: put the verified k3s binary (and optional air-gap images) into the rootfs.

The binary lives at /usr/bin/k3s on the read-only root, so it is upgraded with the OS.
Air-gap images are linked into /var/lib/rancher/k3s/agent/images by tmpfiles at boot.
"""

from __future__ import annotations

from osbuilder.host import k3s_release
from osbuilder.host.context import BuildContext

IMAGES_DIR = "usr/share/osbuilder/k3s"
TMPFILES = "usr/lib/tmpfiles.d/osbuilder-k3s-images.conf"


def resolve_k3s(ctx: BuildContext) -> k3s_release.K3sArtifact:
    o = ctx.options
    if o.k3s_dir is not None:
        return k3s_release.from_local_dir(o.k3s_dir, ctx.board, o.k3s_version)
    version = o.k3s_version or k3s_release.resolve_channel(o.k3s_channel, o.k3s_channel_url)
    if not o.k3s_version:
        ctx.progress.say(f"    channel {o.k3s_channel} -> {version}")
    return k3s_release.fetch_release(version, ctx.board, o.cache_dir, ctx.progress,
                                     o.k3s_release_url, o.k3s_airgap)


def fetch_k3s(ctx: BuildContext) -> None:
    art = ctx.k3s = resolve_k3s(ctx)
    ctx.progress.say(f"    k3s {art.version} sha256 {art.sha256[:16]}…"
                     + (" + air-gap images" if art.airgap_images else ""))


def install_k3s(ctx: BuildContext) -> None:
    art = ctx.k3s
    assert art is not None
    k3s_release.copy_executable(art.binary, ctx.rootfs / "usr/bin/k3s")
    if art.airgap_images is not None:
        name = art.airgap_images.name
        dest = ctx.rootfs / IMAGES_DIR / name
        k3s_release.copy_executable(art.airgap_images, dest)
        dest.chmod(0o644)
        (ctx.rootfs / TMPFILES).write_text(
            "# osbuilder: k3s imports air-gap images from this folder on start\n"
            f"L+ /var/lib/rancher/k3s/agent/images/{name} - - - - /{IMAGES_DIR}/{name}\n"
        )
