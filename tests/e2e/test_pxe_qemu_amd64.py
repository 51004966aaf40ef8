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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from osbuilder.boards import load_board
from osbuilder.qemu import VM, interactive_serial, qemu_argv
from tests.conftest import Build
from tests.helpers.relay import guestfwd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 7 min under TCG on a loaded host

TIMEOUT = 600
GUEST_URL = "http://10.0.2.100:8080"
CONFIG = {"hostname": "pxe-node", "k3os": {"password": "pxe-e2e", "labels": {"boot": "pxe"}}}


@contextmanager
def serve_pxe(folder: Path, config: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    proc = subprocess.Popen([sys.executable, "-m", "osbuilder", "serve-pxe", str(folder),
                             "--bind", "127.0.0.1", "--port", "0", "--url", GUEST_URL,
                             "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        m = re.search(r"on 127\.0\.0\.1:(\d+);", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.stderr else "serve-pxe did not start"
        yield int(m.group(1)), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pxe_diskless_boot_applies_config_url(live_build: Build, tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    (tftp / "chain.ipxe").write_text(f"#!ipxe\nchain {GUEST_URL}/boot.ipxe\n")
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "1G"], check=True)
    with serve_pxe(live_build.out, cfg) as (port, server):
        serial, chardev = interactive_serial(tmp_path / "console.sock",
                                             tmp_path / "console.log")
        argv = qemu_argv(load_board("qemu-amd64"), disk, tmp_path / "vars.fd", serial=serial,
                         extra=chardev, guest_forwards=(guestfwd("10.0.2.100:8080", port),),
                         nic_options=(f"tftp={tftp}", "bootfile=chain.ipxe"))
        with VM(argv, tmp_path / "console.log", tmp_path / "console.sock") as vm:
            vm.wait_for(r"osbuilder: live root from /run/osbuilder/live/root\.squashfs",
                        TIMEOUT)
            root_at = vm.elapsed()
            m = vm.wait_for(r"osbuilder-agent: applied config \(sources=([^)]*), "
                            r"role=server, hostname=pxe-node\)", TIMEOUT)
            agent_at = vm.elapsed()
            vm.wait_for(r"pxe-node login:", TIMEOUT)
            vm.login("osb", "pxe-e2e")
            out = vm.shell("findmnt -no FSTYPE /data; cat /proc/cmdline; "
                           "osbuilder-agent status")
            console = vm.console()
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
