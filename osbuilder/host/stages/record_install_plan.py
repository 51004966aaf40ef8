"""Stage install-plan: record in the image what `osbuilder-agent install` needs to lay out
a disk from a live boot (ISO, PXE) like this build's disk image. Before squash: the plan
travels inside the root."""

from __future__ import annotations

from osbuilder.bootloaders import bootloader
from osbuilder.bootloaders.systemd_boot.build import kernel_options
from osbuilder.host.context import BuildContext
from osbuilder.shared.install_plan import PATH, InstallPlan


def write_install_plan(ctx: BuildContext) -> None:
    efi_arch = ctx.board.arch_facts.uefi
    if not bootloader(ctx.board.bootloader).uefi or efi_arch is None:
        return  # the agent then says this board cannot be installed from a live system
    assert ctx.kernel_version
    s = ctx.board.sizes
    plan = InstallPlan(
        board=ctx.board.name, version=ctx.options.version, kernel_version=ctx.kernel_version,
        efi_arch=efi_arch, boot_mib=s.boot_mib, root_mib=s.root_mib,
        data_mib=s.data_mib, root_part_type=ctx.board.arch_facts.gpt_root_type,
        kernel_options=kernel_options(ctx, "a"))
    dest = ctx.rootfs / PATH
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(plan.to_json())
