"""The kernel arguments a build gives every boot path: the board's, and `lsm=` without the
BPF LSM unless the board keeps it.

The CONFIG_LSM line is the one of Debian trixie's 6.12 kernels (/boot/config-6.12.117+
deb13-cloud-amd64 and -arm64 in the images built here). The kernel reads `lsm=` as the
ordered list of LSMs to start instead of CONFIG_LSM (Documentation/admin-guide/
kernel-parameters.txt, "lsm="), and systemd loads its BPF program only when `bpf` is in
/sys/kernel/security/lsm (src/core/bpf-restrict-fs.c, bpf_restrict_fs_supported).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from osbuilder.host.boards import Board, load_board, load_board_file
from osbuilder.host.context import BuildContext
from osbuilder.host.kernel_args import MAX_KERNEL_CONFIG_BYTES, kernel_args, lsm_without_bpf

DEBIAN_TRIXIE = ('CONFIG_BPF_LSM=y\n'
                 'CONFIG_LSM="landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,'
                 'selinux,smack,tomoyo,bpf,ipe"\n# CONFIG_DEFAULT_SECURITY_DAC is not set\n')
WITHOUT_BPF = ("lsm=landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,"
               "tomoyo,ipe")
KVER = "6.12.0-test-amd64"


def test_debian_list_loses_bpf_and_keeps_its_order() -> None:
    assert lsm_without_bpf(DEBIAN_TRIXIE) == WITHOUT_BPF


def test_nothing_to_change_without_bpf_or_without_a_list() -> None:
    assert lsm_without_bpf('CONFIG_LSM="landlock,lockdown,yama,integrity,apparmor"\n') is None
    assert lsm_without_bpf("# CONFIG_LSM is not set\n") is None
    assert lsm_without_bpf("") is None
    assert lsm_without_bpf('CONFIG_LSM="bpf"\n') == "lsm="  # only bpf: start none of them


@given(st.text(max_size=300))
def test_any_config_text_gives_nothing_or_one_argument_without_bpf(text: str) -> None:
    arg = lsm_without_bpf(text)
    if arg is not None:
        assert arg.startswith("lsm=") and " " not in arg and "\n" not in arg
        assert "bpf" not in arg.removeprefix("lsm=").split(",")


def ctx_for(tmp_path: Path, board: Board, config: str | None) -> BuildContext:
    root = tmp_path / "rootfs"
    (root / "boot").mkdir(parents=True)
    if config is not None:
        (root / f"boot/config-{KVER}").write_text(config)
    return cast(BuildContext, SimpleNamespace(board=board, kernel_version=KVER, rootfs=root))


def with_kernel(board: Board, **kernel: Any) -> Board:
    return dataclasses.replace(board, kernel=dataclasses.replace(board.kernel, **kernel))


def test_board_args_then_lsm(tmp_path: Path) -> None:
    board = load_board("qemu-amd64")
    assert not board.kernel.bpf_lsm  # the default
    assert kernel_args(ctx_for(tmp_path, board, DEBIAN_TRIXIE)) == ("quiet", WITHOUT_BPF)


def test_board_keeps_the_bpf_lsm_or_sets_its_own_list(tmp_path: Path) -> None:
    board = load_board("qemu-amd64")
    keep = with_kernel(board, bpf_lsm=True)
    assert kernel_args(ctx_for(tmp_path / "keep", keep, DEBIAN_TRIXIE)) == ("quiet",)
    own = with_kernel(board, cmdline=("quiet", "lsm=landlock,bpf"))
    assert kernel_args(ctx_for(tmp_path / "own", own, DEBIAN_TRIXIE)) == own.kernel.cmdline


def test_rootfs_without_a_kernel_config_gets_the_board_args(tmp_path: Path) -> None:
    board = load_board("rpi-arm64")
    assert kernel_args(ctx_for(tmp_path, board, None)) == board.kernel.cmdline


def test_kernel_config_is_read_up_to_its_bound(tmp_path: Path) -> None:
    board = load_board("qemu-amd64")
    pad = "# padding\n" * (MAX_KERNEL_CONFIG_BYTES // 10)
    assert kernel_args(ctx_for(tmp_path / "in", board, DEBIAN_TRIXIE + pad)) == \
        ("quiet", WITHOUT_BPF)
    # past the bound: not read, so no lsm= (the kernel starts its own list)
    assert kernel_args(ctx_for(tmp_path / "past", board, pad + DEBIAN_TRIXIE)) == ("quiet",)


def test_board_file_option(tmp_path: Path) -> None:
    text = (Path(load_board("qemu-amd64").source).read_text()
            .replace("  cmdline: [quiet]\n", "  cmdline: [quiet]\n  bpf_lsm: true\n"))
    assert "bpf_lsm: true" in text
    (tmp_path / "qemu-amd64.yaml").write_text(text)
    assert load_board_file(tmp_path / "qemu-amd64.yaml").kernel.bpf_lsm is True
