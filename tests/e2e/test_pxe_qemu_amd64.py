"""Diskless PXE boot (QEMU TCG, OVMF): QEMU's user network answers DHCP and TFTP itself
(tftp=, bootfile=) and the iPXE ROM of the virtio NIC (ipxe-qemu) runs the TFTP script,
which chains to `osbuilder serve-pxe` over HTTP. serve-pxe listens on the host's
127.0.0.1 only; the guest reaches it as 10.0.2.100:8080 through guestfwd (restrict=on:
nothing else is reachable). The initramfs fetches the root squashfs over HTTP into RAM,
the live node applies a config from osb.config_url, and its disk stays untouched.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import Build
from tests.helpers.live_vm import GUEST_URL, pxe_tftp, serve_pxe, vm
from tests.helpers.relay import guestfwd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 7 min under TCG on a loaded host

TIMEOUT = 600
CONFIG = {"hostname": "pxe-node", "k3os": {"password": "pxe-e2e", "labels": {"boot": "pxe"}}}


def test_pxe_diskless_boot_applies_config_url(live_build: Build, tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "1G"], check=True)
    with serve_pxe(live_build.out, cfg) as (port, server):
        with vm(disk, tmp_path, "console",
                guest_forwards=(guestfwd("10.0.2.100:8080", port),),
                nic_options=pxe_tftp(tmp_path)) as v:
            v.wait_for(r"osbuilder: live root from /run/osbuilder/live/root\.squashfs",
                       TIMEOUT)
            root_at = v.elapsed()
            m = v.wait_for(r"osbuilder-agent: applied config \(sources=([^)]*), "
                           r"role=server, hostname=pxe-node\)", TIMEOUT)
            agent_at = v.elapsed()
            v.wait_for(r"pxe-node login:", TIMEOUT)
            v.login("osb", "pxe-e2e")
            out = v.shell("findmnt -no FSTYPE /data; cat /proc/cmdline; "
                          "osbuilder-agent status")
            console = v.console()
        server.terminate()
        _, log = server.communicate(timeout=10)
    print(f"\nPXE: root fetched and mounted after {root_at:.0f} s, agent applied the "
          f"config_url config after {agent_at:.0f} s (TCG)")
    assert "config_url" in m.group(1).split(",")
    assert "tmpfs" in out.split()
    assert f"osb.live={GUEST_URL}/osbuilder-qemu-amd64-1.0.0-pxe.squashfs" in out
    assert f"osb.config_url={GUEST_URL}/config.yaml" in out
    assert "installing" not in console
    requested = re.findall(r'"GET (\S+) HTTP', log)
    assert requested[:2] == ["/boot.ipxe", "/osbuilder-qemu-amd64-1.0.0-pxe.ipxe"], log
    assert "/osbuilder-qemu-amd64-1.0.0-pxe.squashfs" in requested
    assert "/config.yaml" in requested
    with disk.open("rb") as f:  # diskless: the disk was never written
        assert f.read(1 << 20) == bytes(1 << 20)
