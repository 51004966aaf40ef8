"""U-Boot's binary environment file as the boot script and fw_setenv share it."""

from __future__ import annotations

import pytest

from osbuilder.bootloaders.uboot.build import boot_script
from osbuilder.bootloaders.uboot.env_file import ENV_SIZE, env_blob, initial_env, parse_env
from osbuilder.shared.errors import OsbError


def test_env_roundtrip_and_layout() -> None:
    blob = env_blob({"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3"})
    assert len(blob) == ENV_SIZE
    assert blob[4:].startswith(b"BOOT_A_LEFT=3\0BOOT_ORDER=B A\0\0")
    assert parse_env(blob) == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3"}


def test_torn_env_is_detected() -> None:
    blob = bytearray(env_blob({"BOOT_ORDER": "A B"}))
    blob[10] ^= 1
    with pytest.raises(OsbError, match="bad CRC"):
        parse_env(bytes(blob))


def test_env_too_big_is_refused() -> None:
    with pytest.raises(OsbError, match="does not fit"):
        env_blob({"X": "y" * ENV_SIZE})


def test_script_names_the_env_file_and_slot_paths() -> None:
    s = boot_script("root=${osb_root} osb.slot=${osb_slot}", tries=2)
    assert "env import -c ${kernel_addr_r} 0x4000" in s
    assert "fatwrite ${osb_part} ${kernel_addr_r} osbuilder.env 0x4000" in s
    assert "setenv osb_dtb osb/${osb_slot}/${fdtfile}" in s
    assert 'setenv bootargs "root=${osb_root} osb.slot=${osb_slot} ${OSB_ARGS}"' in s
    # the user's own arguments: only OSB_ARGS is taken from the text file
    assert "env import -t ${kernel_addr_r} ${filesize} OSB_ARGS" in s
    # MBR: each slot's root by PARTUUID (the fixed disk id, partitions 2 and 3)
    assert ('if test "${osb_slot}" = "a"; then setenv osb_root PARTUUID=6f736231-02; '
            "else setenv osb_root PARTUUID=6f736231-03; fi") in s
    # only a counted try is written back, and then every state variable
    assert ("if test -n \"${osb_changed}\"; then\n  env export -c -s 0x4000 ${kernel_addr_r} "
            "BOOT_ORDER BOOT_A_OK BOOT_B_OK BOOT_A_LEFT BOOT_B_LEFT BOOT_A_VERSION "
            "BOOT_B_VERSION\n  fatwrite") in s
    assert "setenv BOOT_A_LEFT 2" in s
    # a kernel that does not start resets the board (its try is spent), never falls through
    assert ("\nbooti ${osb_kernel_addr} ${ramdisk_addr_r}:${osb_initrd_size} ${osb_fdt}\n"
            in s) and s.rstrip().endswith("\nreset")


def test_armhf_script_boots_a_zimage() -> None:
    s = boot_script("x", arch="armhf")
    assert "\nbootz ${osb_kernel_addr}" in s and "\nbooti" not in s
    # in RAM's first 128 MiB (the zImage decompressor's rule), not above the initrd
    assert "\nsetenv osb_kernel_addr ${kernel_addr_r}\n" in s
    assert "+ 0x6000000" not in s


def test_initial_env_the_image_slot_is_known_good() -> None:
    assert initial_env("a", "1.0.0") == {
        "BOOT_ORDER": "A B", "BOOT_A_OK": "1", "BOOT_A_LEFT": "3", "BOOT_A_VERSION": "1.0.0",
        "BOOT_B_OK": "0", "BOOT_B_LEFT": "0", "BOOT_B_VERSION": ""}
    assert initial_env("b", "2", tries=1)["BOOT_ORDER"] == "B A"
