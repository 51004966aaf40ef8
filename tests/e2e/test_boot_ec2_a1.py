"""ec2-a1 (arm64 UEFI) built on this amd64 host through qemu-user, then booted unchanged on
`qemu-system-aarch64 -M virt` with AAVMF under TCG: systemd-boot from the disk image, the
agent's `applied config` line on the serial console, then again with the user-data that
cloud-init read from a NoCloud seed disk.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py): the real one cannot be
downloaded here. Slow: the cross build runs every maintainer script under emulation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv, scratch_disk
from tests.conftest import EPOCH, require_build_capability
from tests.helpers.image import fat_files, fat_write, partitions
from tests.helpers.k3s_fixture import write_release_dir
from tests.helpers.nocloud import nocloud_seed, seed_drive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_ec2_a1_builds_on_amd64_and_boots_to_the_agent(tmp_path: Path, build_cache: Path
                                                       ) -> None:
    require_build_capability()
    k3s = write_release_dir(tmp_path / "k3s")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", "ec2-a1", "--out", str(out),
         "--cache-dir", str(build_cache), "--version", "1.0.0", "--k3s-dir", str(k3s)],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "arm64 on this host through qemu-user" in proc.stderr
    image = out / "osbuilder-ec2-a1-1.0.0.img"
    manifest = json.loads((out / "osbuilder-ec2-a1-1.0.0.manifest.json").read_text())
    assert manifest["arch"] == "arm64" and manifest["board"] == "ec2-a1"
    assert "linux-image-cloud-arm64" in {p["name"] for p in manifest["packages"]}
    esp = partitions(image)[1][0]
    files = fat_files(image, esp)
    assert "EFI/BOOT/BOOTAA64.EFI" in files and "osb/a/vmlinuz" in files

    disk = scratch_disk(image, tmp_path / "disk.img", "4G")
    fat_write(disk, partitions(disk)[1][0], "config.yaml",
              yaml.safe_dump({"hostname": "graviton-1", "k3os": {"password": "pw"}}).encode(),
              tmp_path)
    # EC2 user-data through cloud-init (a NoCloud seed stands in for the metadata service)
    seed = nocloud_seed(tmp_path / "seed.img", "#cloud-config\nk3os:\n  labels: {arch: arm64}\n",
                        "i-0a1e2e0000000001")
    argv = qemu_argv(load_board("ec2-a1"), disk, tmp_path / "vars.fd",
                     serial=f"file:{tmp_path / 'console.log'}", extra=seed_drive(seed))
    with VM(argv, tmp_path / "console.log") as vm:
        vm.wait_for(r"osbuilder: slot a", 900)
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml, role=server, "
                    r"hostname=graviton-1\)", 1200)
        print(f"\nec2-a1 under TCG: boot to applied config {vm.elapsed():.0f} s")
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml,/var/lib/cloud/instance/"
                    r"user-data.txt, role=server, hostname=graviton-1\)", 1200)
        print(f"ec2-a1 under TCG: boot to user-data applied {vm.elapsed():.0f} s")
