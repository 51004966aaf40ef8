"""Signed updates: the fleet CA in the image (stage update-keyring) and the RAUC bundle of
the same build (stage bundle), whose only image is this build's root squashfs."""

from __future__ import annotations

import shutil

from osbuilder.host.context import Artifact, BuildContext
from osbuilder.shared.run import run

KEYRING = "etc/rauc/keyring.pem"


def install_keyring(ctx: BuildContext) -> None:
    keyring = ctx.options.keyring
    dest = ctx.rootfs / KEYRING
    dest.parent.mkdir(parents=True, exist_ok=True)
    if keyring is None:
        ctx.progress.say("    no --keyring: this image will refuse every update bundle")
        dest.unlink(missing_ok=True)
        return
    shutil.copyfile(keyring, dest)
    dest.chmod(0o644)


def manifest(ctx: BuildContext) -> str:
    return (
        "[update]\n"
        f"compatible=osbuilder-{ctx.board.name}\n"
        f"version={ctx.options.version}\n"
        f"build={ctx.options.source_date_epoch}\n"
        f"description=osbuilder {ctx.options.version} for {ctx.board.name}\n"
        "\n[bundle]\nformat=verity\n"
        "\n[image.rootfs]\nfilename=rootfs.img\n"
    )


def write_bundle(ctx: BuildContext) -> None:
    o = ctx.options
    if o.sign_key is None or o.sign_cert is None:
        ctx.progress.say("    no --sign-key/--sign-cert: no update bundle")
        return
    assert ctx.squashfs is not None
    content = ctx.work / "bundle"
    content.mkdir()
    (content / "manifest.raucm").write_text(manifest(ctx))
    # a hard link: the squashfs is hundreds of MB and stays in the work dir anyway
    (content / "rootfs.img").hardlink_to(ctx.squashfs)
    out = ctx.work / f"{ctx.basename}.raucb"
    argv = ["rauc", "bundle", f"--cert={o.sign_cert}", f"--key={o.sign_key}"]
    if o.keyring is not None:  # rauc checks the signature against it right away
        argv.append(f"--keyring={o.keyring}")
    run([*argv, content, out], env=ctx.env)
    ctx.artifacts.append(Artifact("bundle", out))
