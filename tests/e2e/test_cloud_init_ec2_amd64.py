"""ec2-amd64 with EC2-style user-data: the image is built (--format img,ami), booted
unchanged in QEMU TCG (q35 + OVMF) with a NoCloud seed disk (FAT, label CIDATA, made
loop-free with mkfs.vfat + mcopy) carrying a #cloud-config. cloud-init stores it, the
agent applies its hostname and k3os: block and puts the metadata's key pair in osb's
authorized_keys, and cloud-init itself runs write_files.

The seed stands in for EC2's metadata service (same user-data, another datasource);
k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.boards import load_board
from osbuilder.qemu import VM, interactive_serial, qemu_argv, scratch_disk
from tests.conftest import EPOCH, require_build_capability
from tests.helpers.image import partitions, squash_read
from tests.helpers.k3s_fixture import write_release_dir

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


def nocloud_seed(dest: Path, user_data: str, instance_id: str) -> Path:
    """A NoCloud seed disk: FAT labelled CIDATA with user-data and meta-data."""
    subprocess.run(["mkfs.vfat", "-C", str(dest), "1024", "-n", "CIDATA"], check=True,
                   capture_output=True)
    meta = f"instance-id: {instance_id}\npublic-keys:\n  - {KEY_PAIR}\n"
    for name, text in (("user-data", user_data), ("meta-data", meta)):
        subprocess.run(["mcopy", "-i", str(dest), "-", f"::/{name}"], input=text.encode(),
                       check=True)
    return dest


def test_ec2_user_data_reaches_the_agent(tmp_path: Path, build_cache: Path) -> None:
    require_build_capability()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", "ec2-amd64", "--out", str(out),
         "--cache-dir", str(build_cache), "--version", "1.0.0",
         "--k3s-dir", str(write_release_dir(tmp_path / "k3s"))],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    image = out / "osbuilder-ec2-amd64-1.0.0.img"
    facts = json.loads((out / "osbuilder-ec2-amd64-1.0.0.ami.json").read_text())
    assert facts == {"architecture": "x86_64", "board": "ec2-amd64", "boot_mode": "uefi",
                     "image": image.name, "size_bytes": image.stat().st_size,
                     "version": "1.0.0"}
    root_a = partitions(image)[1][1]
    cfg = squash_read(image, root_a, "etc/cloud/cloud.cfg.d/90-osbuilder.cfg", tmp_path)
    assert b"datasource_list: [NoCloud, Ec2, None]" in cfg

    disk = scratch_disk(image, tmp_path / "disk.img", "4G")
    seed = nocloud_seed(tmp_path / "seed.img", USER_DATA, "i-0e2e000000000001")
    serial, extra = interactive_serial(tmp_path / "console.sock", tmp_path / "console.log")
    argv = qemu_argv(load_board("ec2-amd64"), disk, tmp_path / "vars.fd", serial=serial,
                     extra=(*extra, "-drive", f"if=virtio,format=raw,readonly=on,file={seed}"))
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
