"""Signed updates: the fleet CA in the image (stage update-keyring) and the RAUC bundle of
the same build (stage bundle), whose only image is this build's root slot image (the
squashfs, with its dm-verity hash tree when the build has one).

A slot's root hash cannot travel inside the slot it hashes, so the bundle carries the
slot's boot files beside the image: the signed UKIs of both slots (uki-a.efi, uki-b.efi:
RAUC picks the inactive slot on the node) or, on U-Boot boards, verity.txt. The
bundle's signature covers them (format verity: the CMS signs the whole bundle's hash
tree). A slot post-install hook (RAUC runs it after writing the slot and before it asks
the slot chooser to make the slot primary) has the running image's agent check and stage
them on the boot partition: `osbuilder-agent stage-boot SLOT BUNDLE_DIR`."""

from __future__ import annotations

import shutil

from osbuilder.host.context import Artifact, BuildContext
from osbuilder.shared.run import run
from osbuilder.shared.verity import VERITY_FILE

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


HOOK = "hook.sh"
HOOK_SCRIPT = """\
#!/bin/sh
# osbuilder: RAUC slot hook. After RAUC wrote the slot, and before it makes the slot
# primary, the running image's agent checks this bundle's boot files for the slot (its
# signed UKI, or its dm-verity root hash) and puts them on the boot partition.
case "$1" in
slot-post-install)
	exec /usr/bin/osbuilder-agent stage-boot "$RAUC_SLOT_BOOTNAME" "$RAUC_BUNDLE_MOUNT_POINT"
	;;
esac
exit 0
"""


def boot_files(ctx: BuildContext) -> dict[str, bytes]:
    """The slot boot files the bundle carries beside the slot image (none: no hook)."""
    files = {p.name: p.read_bytes() for p in ctx.ukis.values()}
    if ctx.verity is not None and not ctx.ukis:
        files[VERITY_FILE] = ctx.verity.env_text().encode()
    return files


def manifest(ctx: BuildContext, hook: bool = False) -> str:
    return (
        "[update]\n"
        f"compatible=osbuilder-{ctx.board.name}\n"
        f"version={ctx.options.version}\n"
        f"build={ctx.options.source_date_epoch}\n"
        f"description=osbuilder {ctx.options.version} for {ctx.board.name}\n"
        "\n[bundle]\nformat=verity\n"
        + (f"\n[hooks]\nfilename={HOOK}\n" if hook else "")
        + "\n[image.rootfs]\nfilename=rootfs.img\n"
        + ("hooks=post-install\n" if hook else "")
    )


def write_bundle(ctx: BuildContext) -> None:
    o = ctx.options
    if o.sign_key is None or o.sign_cert is None:
        ctx.progress.say("    no --sign-key/--sign-cert: no update bundle")
        return
    assert ctx.squashfs is not None
    content = ctx.work / "bundle"
    content.mkdir()
    extra = boot_files(ctx)
    (content / "manifest.raucm").write_text(manifest(ctx, hook=bool(extra)))
    # a hard link: the squashfs is hundreds of MB and stays in the work dir anyway
    (content / "rootfs.img").hardlink_to(ctx.squashfs)
    for name, data in extra.items():
        (content / name).write_bytes(data)
    if extra:
        (content / HOOK).write_text(HOOK_SCRIPT)
        (content / HOOK).chmod(0o755)
    out = ctx.work / f"{ctx.basename}.raucb"
    argv = ["rauc", "bundle", f"--cert={o.sign_cert}", f"--key={o.sign_key}"]
    if o.keyring is not None:  # rauc checks the signature against it right away
        argv.append(f"--keyring={o.keyring}")
    run([*argv, content, out], env=ctx.env)
    ctx.artifacts.append(Artifact("bundle", out))
