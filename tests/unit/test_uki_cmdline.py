"""The kernel command line of a slot's signed UKI and the dm-verity facts it carries.

Under Secure Boot systemd-stub ignores a boot entry's options (systemd-stub(7): "the
command line embedded in the UKI is used"), so this line is everything the kernel and the
initramfs scripts get: the verified root, the slot, the data encryption, and panic= so a
failing initramfs reboots (initramfs-tools' panic() opens a root shell otherwise)."""

from __future__ import annotations

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.source_text import cmdline
from osbuilder.shared.verity import (
    VERITY_ROOT,
    Verity,
    parse_env_text,
    parse_format_output,
    root_options,
    uki_cmdline,
)

HASH = "9a4c07ddf60e4c0e4ff03d8a938a648c6bbfbc90f971a230549d525ade762735"
V = Verity(HASH, 115257344)
# `veritysetup format` (cryptsetup 2.6/2.7) as the verity stage reads it
FORMAT_REPORT = f"""VERITY header information for root.squashfs
UUID:            	6f736231-7665-7269-7479-000000000001
Hash type:       	1
Data blocks:     	28139
Data block size: 	4096
Hash blocks:     	223
Hash block size: 	4096
Hash algorithm:  	sha256
Salt:            	2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881
Root hash:      	{HASH}
"""


def test_slot_a_with_encrypted_data() -> None:
    line = uki_cmdline("a", "PARTLABEL=OSB_ROOT_A", V, "luks", ("tty0", "ttyS0,115200"),
                       ("quiet",))
    assert line == (
        f"root=/dev/mapper/osb-root osb.verity={HASH} osb.verity_offset=115257344 "
        "osb.verity_data=PARTLABEL=OSB_ROOT_A rootfstype=squashfs ro osb.slot=a rauc.slot=a "
        "osb.data=luks panic=10 systemd.gpt_auto=0 console=tty0 console=ttyS0,115200 quiet")


def test_slot_b_differs_only_in_its_slot_names() -> None:
    a = uki_cmdline("a", "PARTLABEL=OSB_ROOT_A", V, "luks", ("ttyS0",), ())
    b = uki_cmdline("b", "PARTLABEL=OSB_ROOT_B", V, "luks", ("ttyS0",), ())
    diff = sorted(set(a.split()) ^ set(b.split()))
    assert diff == ["osb.slot=a", "osb.slot=b", "osb.verity_data=PARTLABEL=OSB_ROOT_A",
                    "osb.verity_data=PARTLABEL=OSB_ROOT_B", "rauc.slot=a", "rauc.slot=b"]


def test_unencrypted_data_has_no_data_option_but_still_panics() -> None:
    line = uki_cmdline("a", "PARTLABEL=OSB_ROOT_A", V, "none", (), ())
    assert "osb.data" not in line and "panic=10" in line.split()
    assert line.split()[0] == f"root={VERITY_ROOT}"


def test_root_options_without_verity_name_the_partition() -> None:
    assert root_options(None, "PARTUUID=6f736231-02") == ["root=PARTUUID=6f736231-02"]
    assert root_options(V, "PARTUUID=6f736231-02")[-1] == "osb.verity_data=PARTUUID=6f736231-02"


def test_the_agent_reads_the_trust_options_as_boot_facts_not_config() -> None:
    line = uki_cmdline("b", "PARTLABEL=OSB_ROOT_B", V, "luks", ("ttyS0",), ())
    config, control = cmdline(line + " osb.hostname=n1")
    assert control["verity"] == HASH and control["data"] == "luks"
    assert control["verity_offset"] == "115257344" and control["slot"] == "b"
    assert config is not None and config.data == {"hostname": "n1"}


def test_format_report_and_the_u_boot_slot_file_round_trip() -> None:
    v = parse_format_output(FORMAT_REPORT, 115257344)
    assert v == V
    assert V.env_text() == f"OSB_VERITY=osb.verity={HASH} osb.verity_offset=115257344\n"
    assert parse_env_text(V.env_text()) == V
    assert parse_env_text("# nothing\n") is None
    with pytest.raises(OsbError, match="printed no root hash"):
        parse_format_output("VERITY header information\n", 4096)


@pytest.mark.parametrize("root_hash,offset", [("abc", 4096), (HASH, 0), (HASH, 4097),
                                              (HASH.upper(), 4096)])
def test_malformed_facts_are_refused(root_hash: str, offset: int) -> None:
    with pytest.raises(OsbError, match="not a dm-verity root hash"):
        Verity(root_hash, offset)
