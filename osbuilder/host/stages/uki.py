"""Stage uki: one Unified Kernel Image per slot and systemd-boot, signed with the fleet's
Secure Boot db key (builds with Secure Boot keys only).

ukify (systemd-ukify(1)) joins systemd-stub, the kernel, the initrd, os-release and the
slot's command line (with its dm-verity root hash) into one PE image, signs it with
sbsign, and has systemd-measure predict and sign PCR 11 for the `enter-initrd` phase with
the fleet's PCR key (`.pcrsig`, `.pcrpkey`): the data partition's key is sealed to that
key, so every UKI the fleet signs unlocks it and nothing else does. The stub and
systemd-boot come from the image's own systemd-boot-efi, so they match its systemd; the
tools run in the cached trixie tools tree. The UKIs of slots A and B differ only in
their command line; the disk image carries A's, the update bundle both.
"""

from __future__ import annotations

import shutil

from osbuilder.bootloaders.systemd_boot.esp import systemd_boot_efi
from osbuilder.host import tools_tree
from osbuilder.host.context import BuildContext
from osbuilder.host.kernel_args import kernel_args
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import SLOTS, root_device
from osbuilder.shared.verity import uki_cmdline

STUB = "usr/lib/systemd/boot/efi/linux{arch}.efi.stub"


def slot_cmdline(ctx: BuildContext, slot: str) -> str:
    assert ctx.verity is not None
    b = ctx.board
    return uki_cmdline(slot, root_device(b.partition_table, slot), ctx.verity,
                       ctx.trust.encryption, b.kernel.console, kernel_args(ctx))


def build_ukis(ctx: BuildContext) -> None:
    keys = ctx.trust.secure_boot
    if keys is None:
        return
    assert ctx.kernel_version and ctx.verity is not None
    arch = ctx.board.arch_facts.uefi
    assert arch is not None  # trust_plan: Secure Boot keys are used on UEFI boards only
    r = ctx.rootfs
    stage = ctx.work / "uki"
    stage.mkdir()
    inputs = {"vmlinuz": r / f"boot/vmlinuz-{ctx.kernel_version}",
              "initrd.img": r / f"boot/initrd.img-{ctx.kernel_version}",
              "os-release": r / "usr/lib/os-release",
              "stub.efi": r / STUB.format(arch=arch),
              "systemd-boot.efi": systemd_boot_efi(r, arch)}
    for name, src in inputs.items():
        if not src.is_file():
            raise OsbError(f"{src.relative_to(r)} missing from the rootfs: a signed build needs "
                           "it (package set 'uefi': systemd-boot-efi)")
        shutil.copyfile(src, stage / name)
    tree = tools_tree.ensure(ctx)
    w, k = tools_tree.WORK + "/uki", tools_tree.KEYS

    def tools(*argv: str) -> str:
        return tools_tree.tools_run(tree, ctx.work, keys.folder, argv, ctx.env)

    key, cert = f"{k}/{keys.db_key.name}", f"{k}/{keys.db_cert.name}"
    for slot in SLOTS:
        tools("ukify", "build", f"--linux={w}/vmlinuz", f"--initrd={w}/initrd.img",
              f"--os-release=@{w}/os-release", f"--cmdline={slot_cmdline(ctx, slot)}",
              f"--uname={ctx.kernel_version}", f"--stub={w}/stub.efi",
              "--signtool=sbsign", f"--secureboot-private-key={key}",
              f"--secureboot-certificate={cert}",
              f"--pcr-private-key={k}/{keys.pcr_key.name}",
              f"--pcr-public-key={k}/{keys.pcr_pub.name}", "--phases=enter-initrd",
              "--pcr-banks=sha256", f"--output={w}/uki-{slot}.efi")
        tools("sbverify", f"--cert={cert}", f"{w}/uki-{slot}.efi")
        ctx.ukis[slot] = stage / f"uki-{slot}.efi"
    tools("sbsign", f"--key={key}", f"--cert={cert}", f"--output={w}/loader.efi",
          f"{w}/systemd-boot.efi")
    ctx.signed_loader = stage / "loader.efi"
    ctx.progress.say(f"    signed UKIs for slots {', '.join(SLOTS)} "
                     f"({ctx.ukis['a'].stat().st_size / 1e6:.1f} MB each) and systemd-boot")
