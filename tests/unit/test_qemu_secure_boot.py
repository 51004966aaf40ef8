"""The QEMU command line of a signed image (`osbuilder run`, the trust e2e helper) is the
one the Secure Boot prototype booted (OVMF 2022.11 secboot build, QEMU 7.2, swtpm 0.7.1):
OVMF keeps its variables in SMM, so q35 needs smm=on and a secure flash, and the TPM is a
TIS device on a swtpm socket. Built here, not run."""

from __future__ import annotations

import shutil
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import qemu_argv
from osbuilder.shared.errors import OsbError

BOARD = load_board("qemu-amd64")
assert BOARD.qemu is not None and BOARD.qemu.firmware_secure_boot is not None
QEMU = BOARD.qemu
assert QEMU.firmware_vars is not None  # OVMF: code and variables in two files
VARS = Path(QEMU.firmware_vars)
MISSING = [p for p in (QEMU.firmware, QEMU.firmware_secure_boot, QEMU.firmware_vars)
           if p and not Path(p).is_file()]
pytestmark = pytest.mark.skipif(
    shutil.which(QEMU.binary) is None or bool(MISSING),
    reason=f"needs {QEMU.binary} and OVMF ({', '.join(map(str, MISSING)) or 'present'}) "
           "on the host (make deps-run)")


def pairs(argv: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairwise(argv) if a.startswith("-")]


def test_signed_image_gets_secure_boot_firmware_smm_and_a_tpm(tmp_path: Path) -> None:
    sock = tmp_path / "tpm/swtpm.sock"
    argv = qemu_argv(BOARD, tmp_path / "disk.img", tmp_path / "vars.fd", accel="tcg",
                     secure_boot=True, tpm=sock)
    p = pairs(argv)
    assert ("-machine", "q35,smm=on") in p
    assert ("-global", "driver=cfi.pflash01,property=secure,value=on") in p
    assert ("-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
                      f"file={QEMU.firmware_secure_boot}") in p
    # a fresh copy of the empty variable store: setup mode, so systemd-boot enrolls
    assert ("-drive", f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}") in p
    assert (tmp_path / "vars.fd").read_bytes() == VARS.read_bytes()
    assert ("-chardev", f"socket,id=chrtpm,path={sock}") in p
    assert ("-tpmdev", "emulator,id=tpm0,chardev=chrtpm") in p
    assert ("-device", "tpm-tis,tpmdev=tpm0") in p


def test_unsigned_image_keeps_the_plain_firmware(tmp_path: Path) -> None:
    argv = qemu_argv(BOARD, tmp_path / "disk.img", tmp_path / "vars.fd", accel="tcg")
    p = pairs(argv)
    assert ("-machine", "q35") in p
    assert not any("secure" in b or "tpm" in b for _, b in p), p
    assert ("-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
                      f"file={QEMU.firmware}") in p


def test_a_board_without_secure_boot_firmware_is_named(tmp_path: Path) -> None:
    board = replace(BOARD, qemu=replace(QEMU, firmware_secure_boot=None))
    with pytest.raises(OsbError, match=r"no qemu\.firmware_secure_boot"):
        qemu_argv(board, tmp_path / "disk.img", tmp_path / "vars.fd", accel="tcg",
                  secure_boot=True)
