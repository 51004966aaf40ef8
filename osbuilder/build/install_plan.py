"""Stage install-plan: record in the image what `osbuilder-agent install` needs to lay out
a disk from a live boot (ISO, PXE) like this build's disk image. Before squash: the plan
travels inside the root."""

from __future__ import annotations

from osbuilder.agent.install.plan import PATH, InstallPlan
from osbuilder.bootloaders.systemd_boot import EFI_ARCH, kernel_options
from osbuilder.context import BuildContext


def write_install_plan(ctx: BuildContext) -> None:
    if ctx.board.bootloader != "systemd-boot" or ctx.board.arch not in EFI_ARCH:
        return  # the agent then says this board cannot be installed from a live system
    assert ctx.kernel_version
    s = ctx.board.sizes
    plan = InstallPlan(
        board=ctx.board.name, version=ctx.options.version, kernel_version=ctx.kernel_version,
        efi_arch=EFI_ARCH[ctx.board.arch], boot_mib=s.boot_mib, root_mib=s.root_mib,
        data_mib=s.data_mib, root_part_type=ctx.board.root_part_type,
        kernel_options=kernel_options(ctx, "a"))
    dest = ctx.rootfs / PATH
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(plan.to_json())
