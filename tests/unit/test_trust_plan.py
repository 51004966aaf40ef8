"""What of the trust chain a build makes, decided before any work: Secure Boot and UKIs
with --keys on UEFI boards, verity with them and on every U-Boot board, LUKS2 data only
with a TPM and Secure Boot keys; impossible choices stop the build, naming the setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.keys import init_keys
from osbuilder.host.settings import BuildOptions
from osbuilder.host.trust_plan import plan_trust
from osbuilder.shared.errors import OsbError


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plan") / "keys"
    init_keys(d, "plan")
    return d


def test_uefi_board_with_keys_and_a_tpm_gets_everything(keys: Path) -> None:
    plan = plan_trust(load_board("qemu-amd64"), BuildOptions(keys=keys))
    assert plan.uki and plan.verity and plan.encryption == "luks" and plan.notes == ()
    assert plan.summary() == "secure boot on, verity on, data encryption luks"


def test_uefi_board_without_keys_boots_as_before() -> None:
    plan = plan_trust(load_board("qemu-amd64"), BuildOptions())
    assert (plan.uki, plan.verity, plan.encryption) == (False, False, "none")
    assert "no Secure Boot keys (--keys): unsigned boot" in plan.notes[0]


def test_a_board_without_a_tpm_says_so(keys: Path) -> None:
    plan = plan_trust(load_board("ec2-amd64"), BuildOptions(keys=keys))
    assert plan.uki and plan.encryption == "none"
    assert any("board ec2-amd64 has no TPM (tpm: false in" in n for n in plan.notes)


def test_luks_asked_for_on_a_board_without_a_tpm_stops(keys: Path) -> None:
    with pytest.raises(OsbError, match=r"--encryption: luks needs a TPM and board ec2-a1 has "
                                       r"none \(tpm: false in"):
        plan_trust(load_board("ec2-a1"), BuildOptions(keys=keys, encryption="luks"))


def test_luks_without_secure_boot_keys_stops() -> None:
    with pytest.raises(OsbError, match=r"--encryption: luks needs --keys with Secure Boot"):
        plan_trust(load_board("qemu-amd64"), BuildOptions(encryption="luks"))


def test_encryption_none_opts_out_from_the_command_line_or_the_board(keys: Path,
                                                                     tmp_path: Path) -> None:
    assert plan_trust(load_board("qemu-amd64"),
                      BuildOptions(keys=keys, encryption="none")).encryption == "none"
    board = dataclasses.replace(load_board("qemu-amd64"), encryption="none")
    assert plan_trust(board, BuildOptions(keys=keys)).encryption == "none"


def test_u_boot_boards_get_verity_and_say_what_is_not_verified(keys: Path) -> None:
    for opts in (BuildOptions(), BuildOptions(keys=keys)):
        plan = plan_trust(load_board("rpi-arm64"), opts)
        assert (plan.uki, plan.verity, plan.encryption) == (False, True, "none")
        assert any("the boot partition itself is not verified" in n for n in plan.notes)
    with pytest.raises(OsbError, match=r"luks needs a UEFI board"):
        plan_trust(load_board("rpi-arm64"), BuildOptions(encryption="luks"))


def test_live_formats_are_not_signed_yet(keys: Path) -> None:
    with pytest.raises(OsbError, match=r"--format iso: live systems are not signed yet"):
        plan_trust(load_board("qemu-amd64"), BuildOptions(keys=keys, formats=("img", "iso")))
    plan_trust(load_board("qemu-amd64"), BuildOptions(formats=("img", "iso")))


def test_keys_that_do_not_chain_stop_the_plan(keys: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    init_keys(bad, "other")
    (bad / "db.auth").write_bytes((keys / "db.auth").read_bytes())
    with pytest.raises(OsbError, match=r"db\.auth: does not enroll"):
        plan_trust(load_board("nuc-amd64"), BuildOptions(keys=bad))
    # a U-Boot board never reads them
    plan_trust(load_board("rpi-arm64"), BuildOptions(keys=bad))
