"""OS upgrades on qemu-amd64 under QEMU TCG (systemd-boot boot counting + RAUC):
v1 → v2 over HTTP with the health gate passing, v2 → broken v3 rolled back by itself,
refused bundles (tampered, other CA, other board, downgrade) that touch no slot, and
power cuts (SIGKILL of QEMU) at random instants of an upgrade.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py) that writes a kubelet
credential and serves this node's Ready condition over HTTPS on the guest's 127.0.0.1; the
broken v3 is built with a stand-in whose node never turns Ready. Bundles are served from
the host's 127.0.0.1 (tests/helpers/http_files.py), reached only through QEMU's guestfwd.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from osbuilder.boards import load_board
from osbuilder.keys import init_keys
from osbuilder.qemu import VM, interactive_serial, qemu_argv, scratch_disk
from tests.conftest import EPOCH, require_build_capability
from tests.helpers.http_files import Served, serve_files
from tests.helpers.image import ext4_fsck, fat_write, partitions
from tests.helpers.k3s_fixture import K3sRelease, write_release_dir
from tests.helpers.relay import guestfwd

pytestmark = pytest.mark.e2e

BOOT = 420  # s: a TCG boot on a loaded 2-core host, with k3s stand-in and health gate
PW = "up-pw"
CONFIG = {"hostname": "up-node", "k3os": {"password": PW},
          "osbuilder": {"upgrade": {"health_timeout": 60}}}
URL = "http://10.0.2.100:8080"


@dataclass
class Release:
    dir: Path
    image: Path  # v1 disk image
    keys: Path


def build(out: Path, cache: Path, version: str, k3s_dir: Path, keys: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", "qemu-amd64", "--out", str(out),
         "--cache-dir", str(cache), "--version", version, "--k3s-dir", str(k3s_dir),
         "--sign-key", str(keys / "signing.key.pem"),
         "--sign-cert", str(keys / "signing.cert.pem")],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=1800)
    assert proc.returncode == 0, f"build {version} failed:\n{proc.stderr[-4000:]}"


def sign_bundle(content: Path, keys: Path, out: Path, compatible: str, version: str) -> None:
    content.mkdir()
    (content / "rootfs.img").write_bytes(os.urandom(1 << 16))
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n"
        "\n[image.rootfs]\nfilename=rootfs.img\n")
    subprocess.run(["rauc", "bundle", f"--cert={keys / 'signing.cert.pem'}",
                    f"--key={keys / 'signing.key.pem'}", str(content), str(out)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Release:
    """v1.0.0 image + bundles 1.1.0 (good), 1.2.0 (k3s never Ready), and bad bundles."""
    require_build_capability()
    tmp = tmp_path_factory.mktemp("upgrade")
    keys, other = tmp / "keys", tmp / "other-keys"
    init_keys(keys, "e2e fleet")
    init_keys(other, "someone else")
    good = write_release_dir(tmp / "k3s-good")
    broken = write_release_dir(tmp / "k3s-broken", K3sRelease(ready=False))
    d = tmp / "www"
    for version, k3s in (("1.0.0", good), ("1.1.0", good), ("1.2.0", broken)):
        build(d, build_cache, version, k3s, keys)
    # refused bundles: one byte of the signature flipped; signed by a CA the image does not
    # trust; for another board; older than the running version
    v2 = (d / "osbuilder-qemu-amd64-1.1.0.raucb").read_bytes()
    sig_size = int.from_bytes(v2[-8:], "big")
    bad = bytearray(v2)
    bad[len(bad) - 8 - sig_size // 2] ^= 0xFF
    (d / "tampered.raucb").write_bytes(bytes(bad))
    payload = bytearray(v2)
    payload[1 << 20] ^= 0xFF  # inside the squashfs payload, covered by the verity hash tree
    (d / "tampered-payload.raucb").write_bytes(bytes(payload))
    sign_bundle(tmp / "c1", other, d / "foreign-ca.raucb", "osbuilder-qemu-amd64", "9.0.0")
    sign_bundle(tmp / "c2", keys, d / "other-board.raucb", "osbuilder-rpi-arm64", "9.0.0")
    sign_bundle(tmp / "c3", keys, d / "older.raucb", "osbuilder-qemu-amd64", "0.9.0")
    return Release(d, d / "osbuilder-qemu-amd64-1.0.0.img", keys)


@pytest.fixture
def www(release: Release) -> Iterator[Served]:
    with serve_files(release.dir) as served:
        yield served


class Node:
    """One booted VM with an interactive console, logged in with sudo ready."""

    def __init__(self, release: Release, tmp: Path, www: Served) -> None:
        self.disk = scratch_disk(release.image, tmp / "disk.img", "4G")
        fat_write(self.disk, partitions(self.disk)[1][0], "config.yaml",
                  yaml.safe_dump(CONFIG).encode(), tmp)
        self.tmp = tmp
        self.www = www
        self.vm: VM | None = None

    def start(self) -> VM:
        serial, extra = interactive_serial(self.tmp / "console.sock", self.tmp / "console.log")
        argv = qemu_argv(load_board("qemu-amd64"), self.disk, self.tmp / "vars.fd",
                         serial=serial, extra=extra,
                         guest_forwards=(guestfwd("10.0.2.100:8080", self.www.port),))
        self.vm = VM(argv, self.tmp / "console.log", self.tmp / "console.sock").__enter__()
        return self.vm

    def login(self, since: int) -> None:
        assert self.vm is not None
        self.vm.wait_for(r"up-node login:", BOOT, since=since)
        time.sleep(3)  # the stand-in's and the gate's console lines interleave with getty
        self.vm.type("\n")
        self.vm.login("osb", PW)
        self.vm.shell(f"echo {PW} | sudo -S true", 60)

    def sh(self, cmd: str, timeout: float = 300) -> tuple[int, str]:
        assert self.vm is not None
        out = self.vm.shell(f"{cmd} 2>&1; echo rc=$?", timeout)
        m = re.search(r"rc=(\d+)\s*$", out)
        assert m, out
        return int(m.group(1)), out

    def settled(self, slot: str) -> str:
        """Status once the booted slot is no longer on trial (its health gate passed, or it
        failed and the node moved on): the next upgrade may only start then."""
        deadline = time.monotonic() + BOOT
        while True:
            _, out = self.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
            if not re.search(rf"slot {slot}:\s+\S+ trial", out) or time.monotonic() > deadline:
                return out
            time.sleep(10)

    def mark(self) -> int:
        assert self.vm is not None
        return len(self.vm.console())


def test_upgrade_then_broken_upgrade_rolls_back(release: Release, www: Served,
                                                tmp_path: Path) -> None:
    node = Node(release, tmp_path, www)
    vm = node.start()
    try:
        vm.wait_for(r"osbuilder: slot a", BOOT)
        node.login(0)
        rc, _ = node.sh("echo kept-across-slots | sudo tee /var/lib/keep.txt && sync")
        assert rc == 0
        # RAUC writes a slot from its start: its first 64 MiB show any write
        slot_b = ("sudo head -c 67108864 /dev/disk/by-partlabel/OSB_ROOT_B | sha256sum; "
                  "sudo ls /boot/efi/loader/entries")
        # console lines (the k3s stand-in, the gate) may interleave with the output:
        # compare only the digest and the entry names
        def slot_b_state() -> tuple[list[str], list[str]]:
            _, out = node.sh(slot_b, 600)
            return re.findall(r"\b[0-9a-f]{64}\b", out), re.findall(r"osb-\S+\.conf", out)

        before = slot_b_state()
        assert len(before[0]) == 1 and before[1] == ["osb-a.conf"], before
        refusals = {
            "tampered.raucb": "rejected by RAUC: signature verification failed",
            "tampered-payload.raucb": "payload does not match its signed hash tree",
            "foreign-ca.raucb": "rejected by RAUC: signature verification failed",
            "other-board.raucb": "bundle is for 'osbuilder-rpi-arm64', this node is "
                                 "'osbuilder-qemu-amd64'",
            "older.raucb": "bundle version 0.9.0 is older than the running 1.0.0",
        }
        for name, why in refusals.items():
            rc, out = node.sh(f"sudo osbuilder-agent upgrade {URL}/{name}")
            assert rc == 2 and why in out, out
        assert slot_b_state() == before, "a refused bundle touched a slot"

        # v1 -> v2: installed into slot b, health gate passes, slot b blessed
        m0 = node.mark()
        vm.type(f"sudo osbuilder-agent upgrade {URL}/osbuilder-qemu-amd64-1.1.0.raucb\n")
        inst = vm.wait_for(r"installed slot b in ([\d.]+) s; it boots next, 3 tries", 900, m0)
        vm.wait_for(r"upgrade: rebooting", 60, m0)
        t_down = time.monotonic()
        vm.wait_for(r"osbuilder: slot b", BOOT, m0)
        vm.wait_for(r"health gate passed: slot b \(1\.1\.0\) marked good", BOOT, m0)
        downtime = time.monotonic() - t_down
        node.login(m0)
        rc, out = node.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt; "
                          "sudo ls /boot/efi/loader/entries")
        assert "version:   1.1.0" in out and "kept-across-slots" in out, out
        assert re.search(r"slot b:\s+1\.1\.0 good \(booted\) \(next boot\)", out), out
        assert re.search(r"slot a:\s+1\.0\.0 good", out), out
        assert "upgrade:   done to 1.1.0" in out and "osb-b.conf" in out, out
        assert (www.requests[-1][0] == "/osbuilder-qemu-amd64-1.1.0.raucb")

        # v2 -> v3 whose k3s never turns Ready: the gate fails, the node goes back to b
        m1 = node.mark()
        vm.type(f"sudo osbuilder-agent upgrade {URL}/osbuilder-qemu-amd64-1.2.0.raucb\n")
        vm.wait_for(r"installed slot a in [\d.]+ s", 900, m1)
        vm.wait_for(r"osbuilder: slot a", BOOT, m1)
        vm.wait_for(r"health gate failed: not healthy within 60 s: node up-node Ready=False",
                    BOOT, m1)
        m2 = node.mark()
        vm.wait_for(r"osbuilder: slot b", BOOT, m2)
        node.login(m2)
        rc, out = node.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
        assert "version:   1.1.0" in out and "kept-across-slots" in out, out
        assert re.search(r"slot a:\s+1\.2\.0 bad", out), out
        assert re.search(r"upgrade:\s+failed to 1\.2\.0: health gate: not healthy within 60 s",
                         out), out
        node.sh("sync")
    finally:
        vm.kill()
    rc, fsck = ext4_fsck(node.disk, partitions(node.disk)[1][3], tmp_path)
    assert rc == 0, fsck
    size_mb = (release.dir / "osbuilder-qemu-amd64-1.1.0.raucb").stat().st_size / 1e6
    print(f"\nupgrade figures (qemu-amd64, TCG): bundle {size_mb:.1f} MB, install "
          f"{inst.group(1)} s (download excluded), downtime reboot→gate passed {downtime:.0f} s")


PHASES = ("download", "slot write", "selector flip", "first boot")


@pytest.mark.slow
def test_power_cut_at_random_instants_never_loses_a_good_slot(
        release: Release, www: Served, tmp_path: Path) -> None:
    """10 SIGKILLs of QEMU during download, slot write, selector flip and first boot of the
    new slot. After each, the next boot must reach a good slot and data must fsck clean."""
    rng = random.Random(int(os.environ.get("OSB_POWER_SEED", "7")))
    node = Node(release, tmp_path, www)
    www.cut_after = None
    rows = []
    vm = node.start()
    node.login(0)
    node.sh("echo kept | sudo tee /var/lib/keep.txt && sync")
    bundles = ["osbuilder-qemu-amd64-1.1.0.raucb", "osbuilder-qemu-amd64-1.0.0.raucb"]
    for run_no in range(10):
        phase = PHASES[run_no % len(PHASES)]
        m = node.mark()
        # 1.0.0 is older than 1.1.0: allowed, this test is about power, not versions
        vm.type(f"sudo osbuilder-agent upgrade --allow-downgrade {URL}/{bundles[run_no % 2]}\n")
        if phase == "download":
            vm.wait_for(r"upgrade: downloading", 300, m)
            time.sleep(rng.uniform(0.2, 5.0))
        elif phase == "slot write":
            vm.wait_for(r"upgrade: installing", 600, m)
            time.sleep(rng.uniform(1.0, 20.0))
        elif phase == "selector flip":
            # RAUC calls the chooser last: it copies kernel and initrd, then the entry
            vm.wait_for(r"boot selector: staging slot", 600, m)
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            vm.wait_for(r"upgrade: rebooting", 900, m)
            vm.wait_for(r"osbuilder: slot", BOOT, m)
            time.sleep(rng.uniform(0.0, 30.0))
        cut_at = node.mark()
        vm.kill()
        rc, fsck = ext4_fsck(node.disk, partitions(node.disk)[1][3], tmp_path)
        vm = node.start()
        slot = vm.wait_for(r"osbuilder: slot ([ab])", BOOT).group(1)
        node.login(0)
        out = node.settled(slot)
        good = re.search(rf"slot {slot}:\s+\S+ good", out) is not None and "kept" in out
        rows.append((run_no + 1, phase, cut_at, slot, good, rc))
        assert good, f"run {run_no + 1} ({phase}): booted slot {slot} not good:\n{out}"
        assert rc == 0, f"run {run_no + 1} ({phase}): data partition not clean:\n{fsck}"
    vm.kill()
    print("\npower-cut runs (qemu-amd64, TCG)\nrun  phase          booted  good  fsck")
    for n, phase, _, slot, good, rc in rows:
        print(f"{n:3}  {phase:13}  {slot:6}  {'yes' if good else 'NO':4}  "
              f"{'clean' if rc == 0 else rc}")
    print(f"survived {sum(1 for r in rows if r[4] and r[5] == 0)}/{len(rows)}")
