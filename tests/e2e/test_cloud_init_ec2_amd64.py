"""ec2-amd64 with EC2-style user-data: the session's ec2-amd64 build (tests/conftest.py)
booted unchanged in QEMU TCG (q35 + OVMF) with a NoCloud seed disk carrying a
#cloud-config. cloud-init stores it; the agent applies its hostname and k3os: block and
puts the metadata's key pair in osb's authorized_keys; cloud-init runs write_files.

The seed (tests/helpers/nocloud.py) stands in for EC2's metadata service (same
user-data, another datasource); k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv, scratch_disk
from tests.conftest import Build
from tests.helpers.nocloud import nocloud_seed, seed_drive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER_DATA = """\
#cloud-config
hostname: ec2-user-data-1
write_files:
  - path: /var/lib/e2e/from-cloud-init.txt
    content: "written by cloud-init\\n"
k3os:
  password: cloud-pw
  labels: {origin: user-data}
"""

# the instance's key pair, as EC2's metadata (here NoCloud's meta-data) hands it out
KEY_PAIR = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOsbuilderEc2KeyPairTestNotARealOne00000 ec2"


def test_ec2_user_data_reaches_the_agent(ec2_amd64_build: Build, tmp_path: Path) -> None:
    image = ec2_amd64_build.image
    disk = scratch_disk(image, tmp_path / "disk.img", "4G")
    seed = nocloud_seed(tmp_path / "seed.img", USER_DATA, "i-0e2e000000000001", (KEY_PAIR,))
    serial, extra = interactive_serial(tmp_path / "console.sock")
    argv = qemu_argv(load_board("ec2-amd64"), disk, tmp_path / "vars.fd", serial=serial,
                     extra=(*extra, *seed_drive(seed)))
    with VM(argv, tmp_path / "console.log", tmp_path / "console.sock") as vm:
        vm.wait_for(r"Cloud-init v\. [\d.]+ running 'init'", 600)
        # NoCloud's seed is a network-mode datasource: cloud-init stores its user-data after
        # the agent's early `boot` (which already has the key pair), and `online` applies it
        vm.wait_for(r"osbuilder-agent: applied config \(sources=/run/cloud-init/instance-data"
                    r"\.json,/var/lib/cloud/instance/user-data\.txt, role=server, "
                    r"hostname=ec2-user-data-1\)", 600)
        print(f"\nec2-amd64 under TCG: boot to user-data applied {vm.elapsed():.0f} s")
        vm.wait_for(r"login:", 300)
        vm.login("osb", "cloud-pw")
        out_text = vm.shell("hostname; cat /var/lib/e2e/from-cloud-init.txt ~/.ssh/"
                            "authorized_keys; echo cloud-pw | sudo -S cat "
                            "/etc/rancher/k3s/config.yaml")
        console = vm.console()
    lines = [line.strip() for line in out_text.splitlines()]
    assert "ec2-user-data-1" in lines, out_text
    assert "written by cloud-init" in lines, out_text
    assert "origin=user-data" in out_text, out_text
    assert KEY_PAIR in lines, out_text
    assert "config error" not in console
