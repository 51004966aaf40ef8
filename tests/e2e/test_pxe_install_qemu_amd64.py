"""PXE install to disk (QEMU TCG, OVMF): the node boots over the network as in
test_pxe_qemu_amd64 (QEMU's TFTP, iPXE chaining to `osbuilder serve-pxe` on the host's
127.0.0.1 through guestfwd, restrict=on), and the config that serve-pxe hands out as
osb.config_url carries `k3os.install.device: /dev/vda`: the live node partitions the
empty 4 GiB virtio disk, writes slot A and the ESP, adds a UEFI boot entry and reboots
(QEMU -no-reboot: exits). QEMU is started again with the same UEFI variables and no
network boot: the installed system applies the config that came from config_url.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import Build
from tests.helpers.image import fat_read
from tests.helpers.live_vm import installed_partitions, pxe_tftp, serve_pxe, vm
from tests.helpers.relay import guestfwd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 5 min under TCG on a loaded host

TIMEOUT = 600
CONFIG = {"hostname": "pxe-installed",
          "k3os": {"password": "pxe-install-e2e", "labels": {"boot": "pxe-install"},
                   "install": {"device": "/dev/vda", "silent": True}}}


def test_pxe_boot_installs_config_url_node_to_disk(live_build: Build, tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "4G"], check=True)
    with serve_pxe(live_build.out, cfg) as (port, server):
        with vm(disk, tmp_path, "install", ("-no-reboot",),
                guest_forwards=(guestfwd("10.0.2.100:8080", port),),
                nic_options=pxe_tftp(tmp_path)) as v:
            v.wait_for(r"osbuilder: live root from /run/osbuilder/live/root\.squashfs",
                       TIMEOUT)
            root_at = v.elapsed()
            v.wait_for(r"osbuilder-agent: installing qemu-amd64 1\.0\.0 to /dev/vda", TIMEOUT)
            install_at = v.elapsed()
            m = v.wait_for(r"osbuilder-agent: installed to /dev/vda in (\d+) s; rebooting",
                           TIMEOUT)
            installed_at = v.elapsed()
            assert v.proc is not None
            v.proc.wait(timeout=180)  # -no-reboot: the guest's reboot ends QEMU
            console = v.console()
        server.terminate()
        _, log = server.communicate(timeout=10)
    print(f"\nPXE install: root fetched and mounted after {root_at:.0f} s, installing from "
          f"{install_at:.0f} s, installed after {installed_at:.0f} s (disk writing "
          f"{m.group(1)} s), TCG")
    assert "refus" not in console
    assert "UEFI boot entry 'osbuilder' added, first in the boot order" in console
    requested = re.findall(r'"GET (\S+) HTTP', log)
    assert "/osbuilder-qemu-amd64-1.0.0-pxe.squashfs" in requested
    assert "/config.yaml" in requested
    parts = installed_partitions(disk)
    written = yaml.safe_load(fat_read(disk, parts[0], "config.yaml"))
    assert written == {"hostname": "pxe-installed",  # config_url's, without install:
                       "k3os": {"password": "pxe-install-e2e",
                                "labels": {"boot": "pxe-install"}}}, written
    assert b"osb.slot=a" in fat_read(disk, parts[0], "loader/entries/osb-a.conf")

    with vm(disk, tmp_path, "installed") as v:  # no TFTP, no serve-pxe: the disk only
        v.wait_for(r"osbuilder-agent: applied config \(sources=/boot/efi/config\.yaml, "
                   r"role=server, hostname=pxe-installed\)", TIMEOUT)
        first_boot = v.elapsed()
        v.wait_for(r"pxe-installed login:", TIMEOUT)
        v.login("osb", "pxe-install-e2e")
        out = v.shell("osbuilder-agent status; findmnt -no SOURCE /data; cat /proc/cmdline")
    print(f"installed system: applied config after {first_boot:.0f} s (TCG)")
    assert re.search(r"slot:\s+a", out), out
    assert "/dev/vda4" in out
    assert "osb.slot=a" in out and "config_url" not in out
