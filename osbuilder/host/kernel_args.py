"""The board's kernel arguments as every boot path of a build gets them (systemd-boot
entries, UKIs, U-Boot's boot.scr, live ISO/PXE): the board file's `kernel.cmdline`, and
`lsm=` without the BPF LSM unless the board keeps it (`kernel.bpf_lsm: true`).

Why the BPF LSM is left out by default: systemd (src/core/bpf-restrict-fs.c, read for
this) loads and attaches its RestrictFileSystems= program at every start of PID 1 when
libbpf can be opened and `bpf` is in /sys/kernel/security/lsm. iproute2 brings libbpf
into every image, no unit here uses RestrictFileSystems=, and under emulation that load
was 4-5 s of PID 1 before its first unit (docs/benchmarks.md). Debian's kernels list
`bpf` in CONFIG_LSM; many distributions build the BPF LSM but leave it out of that list
(Tracee's "LSM BPF support" page). KubeArmor and Tetragon enforcement want it back: the
board option keeps it.
"""

from __future__ import annotations

import re

from osbuilder.host.context import BuildContext

_CONFIG_LSM = re.compile(r'^CONFIG_LSM="([a-z0-9_,]*)"$', re.M)
# Debian's kernel configs are about 280 KB; a rootfs from a tarball could hold anything:
# only this much is read (a CONFIG_LSM beyond it is not found, and the kernel keeps its own)
MAX_KERNEL_CONFIG_BYTES = 4 << 20


def lsm_without_bpf(kernel_config: str) -> str | None:
    """`lsm=` for the kernel's own default list (CONFIG_LSM of its /boot/config-*) minus
    bpf, in the kernel's order; None when that list has no bpf or is not there."""
    m = _CONFIG_LSM.search(kernel_config)
    if m is None:
        return None
    names = [n for n in m.group(1).split(",") if n]
    if "bpf" not in names:
        return None
    return "lsm=" + ",".join(n for n in names if n != "bpf")


def kernel_args(ctx: BuildContext) -> tuple[str, ...]:
    k = ctx.board.kernel
    if k.bpf_lsm or any(a.startswith("lsm=") for a in k.cmdline):
        return k.cmdline  # the board decides
    assert ctx.kernel_version, "the rootfs stage names the kernel"
    config = ctx.rootfs / f"boot/config-{ctx.kernel_version}"
    if not config.is_file():
        return k.cmdline
    with config.open("rb") as f:
        lsm = lsm_without_bpf(f.read(MAX_KERNEL_CONFIG_BYTES).decode(errors="replace"))
    return (*k.cmdline, lsm) if lsm else k.cmdline
