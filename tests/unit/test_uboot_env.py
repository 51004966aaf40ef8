"""U-Boot's binary environment file as the boot script and fw_setenv share it."""

from __future__ import annotations

import pytest

from osbuilder.bootloaders.uboot import ENV_SIZE, boot_script, env_blob, parse_env
from osbuilder.errors import OsbError


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
    s = boot_script("root=PARTLABEL=OSB_ROOT_${osb_slot}", "bcm2837-rpi-3-b.dtb", tries=2)
    assert "env import -c ${kernel_addr_r} 0x4000" in s
    assert "fatwrite ${osb_part} ${kernel_addr_r} uboot.env 0x4000" in s
    assert "load ${osb_part} ${fdt_addr_r} osb/${osb_slot}/bcm2837-rpi-3-b.dtb" in s
    assert 'setenv bootargs "root=PARTLABEL=OSB_ROOT_${osb_slot}"' in s
    assert "setenv BOOT_A_LEFT 2" in s
