"""The other U-Boot boards built on this amd64 host through qemu-user and inspected on
the image file, loop-free: MBR with the four osbuilder partitions, the boot partition's
firmware, U-Boot, boot.scr and slot A's kernel (its header names the arch), initrd and
device trees, the k3s asset of the board's arch, the manifest's arch and kernel.
(rpi-arm64 is built, inspected and booted in tests/e2e/test_rpi_arm64.py; ec2-a1 in
tests/e2e/test_boot_ec2_a1.py.)

k3s is a stand-in (TEST DOUBLE) from a local HTTP fixture, as in tests/conftest.py. Every
board reads Debian's archive directly (rpi-armhf too: its trixie index, inconsistent on this
machine's mirror in November 2026, matches its InRelease again). Slow: every maintainer
script runs under emulation (about 30 minutes per board from cold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from tests.conftest import EPOCH, require_build_capability
from tests.helpers.image import fat_files, fat_read, partitions, probe, squash_read
from tests.helpers.k3s_fixture import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARCH_TAG = {"arm64": b"# arm64\n", "armhf": b"# arm\n"}
# board -> files its boot partition must hold besides boot.scr, the env files, osb/a/*
BOOT_FILES = {
    "rpi5": ["config.txt", "u-boot.bin", "bcm2712-rpi-5-b.dtb"],
    "rpi-armhf": ["bootcode.bin", "start.elf", "fixup.dat", "config.txt", "u-boot.bin",
                  "u-boot-pi2.bin", "bcm2836-rpi-2-b.dtb"],
    "jetson-nano": [],
}


def kernel_is_for(arch: str, image: bytes) -> bool:
    if arch == "arm64":  # arm64 Image header: magic "ARM\x64" at 0x38
        return image[0x38:0x3C] == b"ARM\x64"
    return int.from_bytes(image[0x24:0x28], "little") == 0x016F2818  # zImage magic


@pytest.mark.parametrize("name", sorted(BOOT_FILES))
def test_u_boot_board_image(name: str, k3s_server: Served, build_cache: Path,
                            tmp_path: Path) -> None:
    require_build_capability()
    board = load_board(name)
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, OSB_K3S_CHANNEL_URL=k3s_server.channel_url,
               OSB_K3S_RELEASE_URL=k3s_server.release_url)
    r = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board", name,
                        "--out", str(tmp_path / "out"), "--cache-dir", str(build_cache)],
                       env=env, capture_output=True, text=True, timeout=5400)
    assert r.returncode == 0, r.stderr[-4000:]
    img = Path(r.stdout.strip().splitlines()[-1])
    label, parts = partitions(img)
    assert label == "dos" and [p.type for p in parts] == ["c", "83", "83", "83"]
    boot, root_a, root_b, data = (probe(img, p) for p in parts)
    assert (boot["TYPE"], boot["LABEL"]) == ("vfat", "OSB_BOOT")
    assert root_a["TYPE"] == "squashfs" and "TYPE" not in root_b
    assert (data["TYPE"], data["LABEL"]) == ("ext4", "OSB_DATA")
    files = set(fat_files(img, parts[0]))
    wanted = ["boot.scr", "osbuilder.env", "osbuilder-redund.env", "osb/a/vmlinuz",
              "osb/a/initrd.img", *(f"osb/a/{d}" for d in board.dtbs), *BOOT_FILES[name]]
    assert not [f for f in wanted if f not in files], sorted(files)
    assert kernel_is_for(board.arch, fat_read(img, parts[0], "osb/a/vmlinuz"))
    # the k3s asset of the board's arch (the stand-in names it; a real k3s is an ELF of
    # that machine, k3s-arm64 / k3s-armhf in the release)
    k3s = squash_read(img, parts[1], "usr/bin/k3s", tmp_path)
    assert k3s.endswith(ARCH_TAG[board.arch]), k3s[-40:]
    manifest = json.loads(next((tmp_path / "out").glob("*.manifest.json")).read_text())
    assert manifest["arch"] == board.arch and manifest["board"] == name
    packages = {p["name"]: p["version"] for p in manifest["packages"]}
    assert board.kernel.package in packages
    if board.kernel.suite == "trixie-backports":
        assert "bpo" in packages[board.kernel.package], packages[board.kernel.package]
