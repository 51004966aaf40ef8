"""A real build of ec2-amd64 (formats img and ami), inspected on the image file alone:
what `publish ami` reads, and cloud-init wired in without taking over the agent's jobs.

k3s here is a stand-in (TEST DOUBLE) served by a local HTTP fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Build
from tests.helpers.image import fat_files, partitions, squash_list, squash_read

pytestmark = pytest.mark.integration


def test_ami_description_and_uefi_boot_files(ec2_amd64_build: Build) -> None:
    img = ec2_amd64_build.image
    facts = json.loads(img.with_name(img.stem + ".ami.json").read_text())
    assert facts == {"architecture": "x86_64", "board": "ec2-amd64", "boot_mode": "uefi",
                     "image": img.name, "size_bytes": img.stat().st_size, "version": "1.0.0"}
    table, parts = partitions(img)
    assert table == "gpt" and parts[0].name == "OSB_BOOT"
    assert "EFI/BOOT/BOOTX64.EFI" in fat_files(img, parts[0])
    manifest = json.loads(ec2_amd64_build.manifest.read_text())
    names = {p["name"] for p in manifest["packages"]}
    assert {"cloud-init", "linux-image-cloud-amd64", "systemd-boot-efi"} <= names
    print(f"\nec2-amd64 build (cold rootfs cache shared with the session): "
          f"{ec2_amd64_build.seconds:.0f} s, {img.stat().st_size / 1e6:.0f} MB raw")


def test_cloud_init_is_configured_and_ordered(ec2_amd64_build: Build, tmp_path: Path) -> None:
    img = ec2_amd64_build.image
    root = partitions(img)[1][1]
    files = squash_list(img, root)
    # the units our own units order against exist under these names (cloud-init 24.3+)
    for unit in ("cloud-init-local.service", "cloud-init-network.service",
                 "cloud-config.service"):
        assert f"usr/lib/systemd/system/{unit}" in files, unit
    assert "etc/systemd/system/cloud-init.target.wants/cloud-init-local.service" in files
    cfg = squash_read(img, root, "etc/cloud/cloud.cfg.d/90-osbuilder.cfg", tmp_path).decode()
    assert "datasource_list: [NoCloud, Ec2, None]" in cfg
    assert "cloud_init_modules: [seed_random, bootcmd, write_files]" in cfg
    boot_unit = squash_read(img, root, "usr/lib/systemd/system/osbuilder-boot.service",
                            tmp_path).decode()
    assert "After=cloud-init-local.service" in boot_unit
    online = squash_read(img, root, "usr/lib/systemd/system/osbuilder-online.service",
                         tmp_path).decode()
    assert "cloud-init-network.service" in online
