"""The ISO installs itself (QEMU TCG, OVMF): booted from a virtio-scsi CD-ROM next to an
empty virtio disk, with install.device in the config baked into the ISO; the live system
partitions the disk, writes slot A and the ESP, adds a UEFI boot entry and reboots (QEMU
-no-reboot: exits). QEMU is started again without the CD, same UEFI variables: the
installed system applies the config. Booted once more from the CD, the installer refuses
the disk that now holds the installed system (no install.force) and writes nothing.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import Build
from tests.helpers.image import fat_read, partitions, read_range
from tests.helpers.live_vm import cdrom, installed_partitions, vm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT = 600


def test_iso_installs_to_empty_disk_and_boots_from_it(live_build: Build,
                                                      tmp_path: Path) -> None:
    iso = live_build.out / "osbuilder-qemu-amd64-1.0.0.iso"
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "4G"], check=True)
    with vm(disk, tmp_path, "install", (*cdrom(iso), "-no-reboot")) as v:
        v.wait_for(r"osbuilder: live root from /run/osbuilder/medium/osb/root\.squashfs",
                   TIMEOUT)
        m = v.wait_for(r"osbuilder-agent: installed to /dev/vda in (\d+) s; rebooting",
                       TIMEOUT)
        booted_live = v.elapsed()
        assert v.proc is not None
        v.proc.wait(timeout=180)  # -no-reboot: the guest's reboot ends QEMU
        console = v.console()
    print(f"\nISO {iso.stat().st_size / 2**20:.0f} MiB; live boot + install "
          f"{booted_live:.0f} s (disk writing {m.group(1)} s), TCG")
    assert "osbuilder-agent: installing qemu-amd64 1.0.0 to /dev/vda" in console
    assert "refus" not in console
    parts = installed_partitions(disk)
    cfg = yaml.safe_load(fat_read(disk, parts[0], "config.yaml"))
    assert cfg == {"hostname": "installed-node", "k3os": {"password": "iso-e2e"}}, cfg
    assert b"osb.slot=a" in fat_read(disk, parts[0], "loader/entries/osb-a.conf")
    assert "UEFI boot entry 'osbuilder' added, first in the boot order" in console

    with vm(disk, tmp_path, "installed") as v:  # no CD-ROM any more
        v.wait_for(r"osbuilder-agent: applied config \(sources=/boot/efi/config\.yaml, "
                   r"role=server, hostname=installed-node\)", TIMEOUT)
        first_boot = v.elapsed()
        v.wait_for(r"installed-node login:", TIMEOUT)
        v.login("osb", "iso-e2e")
        out = v.shell("osbuilder-agent status; findmnt -no SOURCE /data")
    print(f"installed system: applied config after {first_boot:.0f} s (TCG)")
    assert re.search(r"slot:\s+a", out), out
    assert "/dev/vda4" in out

    before = hashlib.sha256(read_range(disk, parts[0]) + read_range(disk, parts[1])).digest()
    with vm(disk, tmp_path, "again", cdrom(iso)) as v:
        v.wait_for(r"osbuilder-agent: error: install refused, nothing written:\s+"
                   r"install\.device /dev/vda: holds data \(/dev/vda: gpt partition table; "
                   r"/dev/vda1: vfat 'OSB_BOOT'.*\); refusing to erase it\. Set "
                   r"install\.force: true", TIMEOUT)
        v.wait_for(r"installed-node login:", TIMEOUT)  # the live system stays usable
    assert [p.name for p in partitions(disk)[1]] == [p.name for p in parts]
    after = hashlib.sha256(read_range(disk, parts[0]) + read_range(disk, parts[1])).digest()
    assert before == after, "the refused disk was written"
