"""The console installer in a VM (QEMU TCG, OVMF) without a network card, as on a NUC
without its cable: the ISO's config has no install.device;
the test picks the ISO's "install to disk" boot entry in the systemd-boot menu
(osb.mode=install), and osbuilder-install.service asks on the serial console. The test
types its answers (VM.type): a wrong disk number first (asked again), the disk, a
password twice, k3s agent, the server URL and the token, and confirms. The live system
installs to the empty virtio disk and reboots (QEMU -no-reboot: exits). The installer asks
at once: nothing it waits for (`online` only runs when the config names something to
fetch) may wait for the network, whose wait-online unit fails only after 2 minutes. Booted
again from the disk (same UEFI variables, no CD), the installed node runs as a k3s agent of
that server with the ISO's hostname, and the typed password logs in on the console.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from osbuilder.host.qemu import VM
from tests.conftest import Build
from tests.helpers.image import fat_read
from tests.helpers.live_vm import cdrom, installed_partitions, vm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 5 min under TCG on a loaded host

TIMEOUT = 600
PASSWORD = "typed-at-install"
SERVER = "https://10.0.2.100:6443"
TOKEN = "K10console::server:typed-token"
LIVE_TITLE = "live system"  # the starts of the two entries' titles (osbuilder/formats/iso.py)
INSTALL_TITLE = "install to disk"


class Answering:
    """Types answers to the installer's prompts, each prompt looked for after the last."""

    def __init__(self, v: VM, since: int) -> None:
        self.v, self.since = v, since

    def wait(self, pattern: str) -> re.Match[str]:
        m = self.v.wait_for(pattern, TIMEOUT, since=self.since)
        self.since = m.end()
        return m

    def answer(self, prompt: str, text: str) -> None:
        self.wait(prompt)
        self.v.type(text + "\n")


def pick_install_entry(v: VM) -> None:
    """systemd-boot's menu (5 s timeout, live entry the default): move to the install
    entry. The menu is drawn top to bottom: which title comes first says up or down."""
    v.wait_for(re.escape(INSTALL_TITLE), TIMEOUT)
    v.wait_for(re.escape(LIVE_TITLE), 10)
    text = v.console()
    up = text.index(INSTALL_TITLE) < text.index(LIVE_TITLE)
    v.type("\x1b[A" if up else "\x1b[B")
    v.type("\r")


def test_console_installer_installs_agent_and_its_password_logs_in(
        console_live_build: Build, tmp_path: Path) -> None:
    iso = console_live_build.out / "osbuilder-qemu-amd64-1.0.0.iso"
    disk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "4G"], check=True)
    with vm(disk, tmp_path, "install", (*cdrom(iso), "-no-reboot"), network=False) as v:
        pick_install_entry(v)
        v.wait_for(r"osbuilder: live root from /run/osbuilder/medium/osb/root\.squashfs",
                   TIMEOUT)
        m = v.wait_for(r"osbuilder installer: installs this system onto a disk", TIMEOUT)
        asked_at = v.elapsed()
        assert not re.search(r"Failed to start .*Wait for Network to be Configured",
                             v.console()[:m.start()]), "the installer waited for the network"
        a = Answering(v, m.end())
        menu = a.wait(r"Install to which disk\? \[1-\d\]: ")
        listed = v.console()[m.end():menu.start()]
        vda = re.search(r"(\d)\) /dev/vda ", listed)
        assert vda, listed
        assert "/dev/sr0" not in listed, listed  # the CD is never offered
        v.type("9\n")  # no such disk: asked again
        a.wait(r"please answer a number from 1 to \d")
        a.answer(r"Install to which disk\? \[1-\d\]: ", vda.group(1))
        a.answer(r"Password for user osb \(empty: SSH keys only\): ", PASSWORD)
        a.answer(r"Repeat the password: ", PASSWORD)
        a.answer(r"Run k3s as \(1\) server or \(2\) agent joining a server\? \[1\]: ", "2")
        a.answer(r"Server URL \(https://host:6443\): ", SERVER)
        a.answer(r"Cluster token: ", TOKEN)
        a.answer(r"Erase /dev/vda and install\? \[y/N\]: ", "y")
        done = v.wait_for(r"osbuilder-agent: installed to /dev/vda in (\d+) s; rebooting",
                          TIMEOUT)
        installed_at = v.elapsed()
        assert v.proc is not None
        v.proc.wait(timeout=180)  # -no-reboot: the guest's reboot ends QEMU
        console = v.console()
    print(f"\nconsole installer: asked after {asked_at:.0f} s of live boot, installed after "
          f"{installed_at:.0f} s (disk writing {done.group(1)} s), TCG")
    assert "osbuilder-agent: installing qemu-amd64 1.0.0 to /dev/vda" in console
    assert PASSWORD not in console  # not echoed
    parts = installed_partitions(disk)
    cfg = yaml.safe_load(fat_read(disk, parts[0], "config.yaml"))
    assert cfg["hostname"] == "console-node"
    k3os = cfg["k3os"]
    assert k3os["server_url"] == SERVER and k3os["token"] == TOKEN
    assert "install" not in k3os
    assert k3os["password"].startswith("$") and PASSWORD not in k3os["password"], k3os

    with vm(disk, tmp_path, "installed") as v:  # no CD-ROM any more
        v.wait_for(r"osbuilder-agent: applied config \(sources=/boot/efi/config\.yaml, "
                   r"role=agent, hostname=console-node\)", TIMEOUT)
        first_boot = v.elapsed()
        v.wait_for(r"console-node login:", TIMEOUT)
        v.login("osb", PASSWORD)
        out = v.shell(f"osbuilder-agent status; echo {PASSWORD} | "
                      "sudo -S cat /etc/rancher/k3s/config.yaml")
    print(f"installed system: applied config after {first_boot:.0f} s (TCG)")
    assert re.search(r"slot:\s+a", out), out
    assert re.search(r"k3s role:\s+agent", out), out
    assert re.search(r"hostname:\s+console-node", out), out
    assert re.search(rf"^server: ['\"]?{re.escape(SERVER)}['\"]?\r*$", out, re.M), out
    assert re.search(rf"^token: ['\"]?{re.escape(TOKEN)}['\"]?\r*$", out, re.M), out
    assert "cluster-init" not in out
