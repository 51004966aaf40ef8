"""The arm64 ISO (board ec2-a1, built on this amd64 host through qemu-user) boots live on
`qemu-system-aarch64 -M virt` with AAVMF under TCG from a virtio-scsi CD-ROM, installs
itself to an empty virtio disk (install.device in the config baked into the ISO), and
the installed system then boots from the disk alone through systemd-boot and applies the
config: the arm64 half of what test_iso_install_qemu_amd64.py checks on amd64.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py): the real one cannot be
downloaded here. Slow: the cross build runs every maintainer script under emulation, and
an emulated arm64 guest boots twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv
from tests.conftest import EPOCH, require_build_capability
from tests.helpers.image import fat_files, fat_read
from tests.helpers.k3s_fixture import write_release_dir
from tests.helpers.live_vm import cdrom, installed_partitions

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT = 1800  # an emulated Cortex-A72 on a shared 2-core host
CONFIG = {"hostname": "iso-arm64", "k3os": {"password": "iso-arm64",
                                            "install": {"device": "/dev/vda", "silent": True}}}


def test_arm64_iso_installs_and_the_disk_boots(tmp_path: Path, build_cache: Path) -> None:
    require_build_capability()
    if shutil.which("xorriso") is None:
        pytest.skip("xorriso missing (run `make deps`): cannot build --format iso")
    k3s = write_release_dir(tmp_path / "k3s")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", "ec2-a1", "--out", str(out),
         "--cache-dir", str(build_cache), "--version", "1.0.0", "--k3s-dir", str(k3s),
         "--format", "iso", "--config", str(cfg)],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    iso = out / "osbuilder-ec2-a1-1.0.0.iso"
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "4G"], check=True)
    board = load_board("ec2-a1")

    argv = qemu_argv(board, disk, tmp_path / "vars.fd",
                     serial=f"file:{tmp_path / 'install.log'}", extra=(*cdrom(iso), "-no-reboot"))
    with VM(argv, tmp_path / "install.log") as v:
        v.wait_for(r"osbuilder: live root from /run/osbuilder/medium/osb/root\.squashfs",
                   TIMEOUT)
        m = v.wait_for(r"osbuilder-agent: installed to /dev/vda in (\d+) s; rebooting",
                       TIMEOUT)
        installed = v.elapsed()
        assert v.proc is not None
        v.proc.wait(timeout=300)  # -no-reboot: the guest's reboot ends QEMU
        console = v.console()
    print(f"\narm64 ISO {iso.stat().st_size / 2**20:.0f} MiB; live boot + install "
          f"{installed:.0f} s (disk writing {m.group(1)} s), TCG")
    assert "osbuilder-agent: installing ec2-a1 1.0.0 to /dev/vda" in console
    parts = installed_partitions(disk)
    files = fat_files(disk, parts[0])
    assert "EFI/BOOT/BOOTAA64.EFI" in files and "osb/a/vmlinuz" in files, files
    assert yaml.safe_load(fat_read(disk, parts[0], "config.yaml")) == {
        "hostname": "iso-arm64", "k3os": {"password": "iso-arm64"}}

    argv = qemu_argv(board, disk, tmp_path / "vars.fd",
                     serial=f"file:{tmp_path / 'installed.log'}")
    with VM(argv, tmp_path / "installed.log") as v:  # no CD-ROM any more
        v.wait_for(r"osbuilder: slot a", TIMEOUT)
        v.wait_for(r"osbuilder-agent: applied config \(sources=/boot/efi/config\.yaml, "
                   r"role=server, hostname=iso-arm64\)", TIMEOUT)
        print(f"installed arm64 system: applied config after {v.elapsed():.0f} s (TCG)")
