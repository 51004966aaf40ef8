"""The OS-upgrade e2e scenario, shared by every board it runs on (qemu-amd64 with
systemd-boot, rpi-arm64 with U-Boot): releases built with a test fleet CA, one node VM
with an interactive console, and the v1 → v2 → broken v3 flow with its assertions.

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
from dataclasses import dataclass
from pathlib import Path

import yaml

from osbuilder.host.boards import load_board
from osbuilder.host.keys import init_keys
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv, scratch_disk
from osbuilder.shared.errors import ExitCode
from osbuilder.shared.layout import root_device_path
from tests.conftest import EPOCH
from tests.helpers.console_node import ConsoleNode
from tests.helpers.http_files import Served
from tests.helpers.image import ext4_fsck, fat_fsck, fat_write, partitions
from tests.helpers.k3s_fixture import K3sRelease, write_release_dir
from tests.helpers.relay import guestfwd

PW = "up-pw"
# k3s registers the node as its node-name, not the host name: the health gate must ask the
# API for that name (the k3s stand-in knows no other)
NODE_NAME = "edge-rack1-n3"
CONFIG = {"hostname": "up-node", "k3os": {"password": PW, "k3s_args": [f"--node-name={NODE_NAME}"]},
          "osbuilder": {"upgrade": {"health_timeout": 60}}}
URL = "http://10.0.2.100:8080"
# what shows the boot selector's state, per bootloader, and the lines of it to compare
SELECTOR = {"systemd-boot": ("sudo ls /boot/efi/loader/entries", r"osb-\S+\.conf"),
            "u-boot": ("sudo fw_printenv", r"BOOT_\w+=\S*")}


@dataclass
class Release:
    board: str
    dir: Path
    image: Path  # v1 disk image
    keys: Path
    boot_timeout: float  # s: boot to login on this board under TCG on a loaded host

    def bundle(self, version: str) -> str:
        return f"osbuilder-{self.board}-{version}.raucb"


def virt_console(disk: Path, tmp: Path) -> None:
    """A Pi image on QEMU's virt machine: its serial port is the PL011 (ttyAMA0), where the
    Pi's header UART is ttyS1; the user's kernel arguments file puts the console there."""
    fat_write(disk, partitions(disk)[1][0], "osbuilder-args.txt",
              b"OSB_ARGS=console=ttyAMA0,115200\n", tmp)


def node_disk(image: Path, tmp: Path, hostname: str) -> Path:
    """A 4 GiB SD card (raspi3b wants a power of 2) from a Pi image, with a server config
    for `hostname` (console password "pw") on its FAT partition."""
    disk = scratch_disk(image, tmp / "sd.img", "4G")
    fat_write(disk, partitions(disk)[1][0], "config.yaml",
              yaml.safe_dump({"hostname": hostname, "k3os": {"password": "pw"}}).encode(), tmp)
    return disk


def boot_via_u_boot(vm: VM, hostname: str, timeout: float) -> tuple[float, dict[str, str]]:
    """A Pi image's first boot on QEMU virt through its boot.scr, up to the login prompt:
    (seconds to the agent's `applied config`, the fields of its status line)."""
    vm.wait_for(r"osbuilder: booting slot a \(A left 3, B left 0\)", 300)
    vm.wait_for(r"osbuilder: slot a", timeout)
    vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml, role=server, "
                rf"hostname={hostname}\)", timeout)
    t_applied = vm.elapsed()
    m = vm.wait_for(r"osbuilder-agent: status (.*)", timeout)
    vm.wait_for(rf"{hostname} login:", timeout)
    return t_applied, dict(kv.split("=", 1) for kv in m.group(1).split())


def build(board: str, out: Path, cache: Path, version: str, k3s_dir: Path, keys: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", board, "--out", str(out),
         "--cache-dir", str(cache), "--version", version, "--k3s-dir", str(k3s_dir),
         "--sign-key", str(keys / "signing.key.pem"),
         "--sign-cert", str(keys / "signing.cert.pem")],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=3600)
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


def make_release(board: str, tmp: Path, cache: Path, boot_timeout: float) -> Release:
    """v1.0.0 image + bundles 1.1.0 (good), 1.2.0 (k3s never Ready), and bad bundles."""
    keys, other = tmp / "keys", tmp / "other-keys"
    init_keys(keys, "e2e fleet")
    init_keys(other, "someone else")
    good = write_release_dir(tmp / "k3s-good")
    broken = write_release_dir(tmp / "k3s-broken", K3sRelease(ready=False))
    d = tmp / "www"
    for version, k3s in (("1.0.0", good), ("1.1.0", good), ("1.2.0", broken)):
        build(board, d, cache, version, k3s, keys)
    # refused bundles: one byte of the signature flipped; one inside the payload; signed by
    # a CA the image does not trust; for another board; older than the running version
    v2 = (d / f"osbuilder-{board}-1.1.0.raucb").read_bytes()
    sig_size = int.from_bytes(v2[-8:], "big")
    bad = bytearray(v2)
    bad[len(bad) - 8 - sig_size // 2] ^= 0xFF
    (d / "tampered.raucb").write_bytes(bytes(bad))
    payload = bytearray(v2)
    payload[1 << 20] ^= 0xFF  # inside the squashfs payload, covered by the verity hash tree
    (d / "tampered-payload.raucb").write_bytes(bytes(payload))
    other_board = "ec2-a1" if board != "ec2-a1" else "qemu-amd64"
    sign_bundle(tmp / "c1", other, d / "foreign-ca.raucb", f"osbuilder-{board}", "9.0.0")
    sign_bundle(tmp / "c2", keys, d / "other-board.raucb", f"osbuilder-{other_board}", "9.0.0")
    sign_bundle(tmp / "c3", keys, d / "older.raucb", f"osbuilder-{board}", "0.9.0")
    return Release(board, d, d / f"osbuilder-{board}-1.0.0.img", keys, boot_timeout)


class Node(ConsoleNode):
    """One booted VM with an interactive console, logged in with sudo ready."""

    def __init__(self, release: Release, tmp: Path, www: Served) -> None:
        self.release = release
        self.board = load_board(release.board)
        self.boot = release.boot_timeout
        self.hostname, self.password = "up-node", PW
        self.disk = scratch_disk(release.image, tmp / "disk.img", "4G")
        fat_write(self.disk, partitions(self.disk)[1][0], "config.yaml",
                  yaml.safe_dump(CONFIG).encode(), tmp)
        if self.board.bootloader == "u-boot":
            virt_console(self.disk, tmp)
        self.tmp = tmp
        self.www = www
        self.vm: VM | None = None

    def start(self) -> VM:
        serial, extra = interactive_serial(self.tmp / "console.sock")
        argv = qemu_argv(self.board, self.disk, self.tmp / "vars.fd", serial=serial,
                         extra=extra,
                         guest_forwards=(guestfwd("10.0.2.100:8080", self.www.port),))
        self.vm = VM(argv, self.tmp / "console.log", self.tmp / "console.sock").__enter__()
        return self.vm

    def settled(self, slot: str) -> str:
        """Status once the booted slot is no longer on trial (its health gate passed, or it
        failed and the node moved on): the next upgrade may only start then."""
        deadline = time.monotonic() + self.boot
        while True:
            _, out = self.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
            if not re.search(rf"slot {slot}:\s+\S+ trial", out) or time.monotonic() > deadline:
                return out
            time.sleep(10)

    def slot_b_state(self) -> tuple[list[str], list[str]]:
        """Digest of slot B's first 64 MiB (RAUC writes a slot from its start) and the boot
        selector's state. Console lines (the k3s stand-in, the gate) may interleave with
        the output: only the digest and the selector lines are kept."""
        cmd, pattern = SELECTOR[self.board.bootloader]
        dev = root_device_path(self.board.partition_table, "b")
        _, out = self.sh(f"sudo head -c 67108864 {dev} | sha256sum; {cmd}", 600)
        return re.findall(r"\b[0-9a-f]{64}\b", out), sorted(re.findall(pattern, out))


def upgrade_then_broken_upgrade(release: Release, www: Served, tmp: Path) -> str:
    """The scenario; returns a line of figures for the test to print."""
    node = Node(release, tmp, www)
    b2, b3 = release.bundle("1.1.0"), release.bundle("1.2.0")
    vm = node.start()
    boot = release.boot_timeout
    try:
        vm.wait_for(r"osbuilder: slot a", boot)
        node.login(0)
        rc, _ = node.sh("echo kept-across-slots | sudo tee /var/lib/keep.txt && sync")
        assert rc == 0
        before = node.slot_b_state()
        assert len(before[0]) == 1 and before[1], before
        refusals = {
            "tampered.raucb": "rejected by RAUC: signature verification failed",
            "tampered-payload.raucb": "payload does not match its signed hash tree",
            "foreign-ca.raucb": "rejected by RAUC: signature verification failed",
            "other-board.raucb": "bundle is for 'osbuilder-",
            "older.raucb": "bundle version 0.9.0 is older than the running 1.0.0",
        }
        for name, why in refusals.items():
            rc, out = node.sh(f"sudo osbuilder-agent upgrade {URL}/{name}")
            assert rc == ExitCode.BAD_INPUT and why in out, out  # a refused bundle
        assert node.slot_b_state() == before, "a refused bundle touched a slot"

        # v1 -> v2: installed into slot b, health gate passes, slot b known good
        m0 = node.mark()
        vm.type(f"sudo osbuilder-agent upgrade {URL}/{b2}\n")
        inst = vm.wait_for(r"installed slot b in ([\d.]+) s; it boots next, 3 tries", 900, m0)
        vm.wait_for(r"upgrade: rebooting", 60, m0)
        t_down = time.monotonic()
        vm.wait_for(r"osbuilder: slot b", boot, m0)
        vm.wait_for(r"health gate passed: slot b \(1\.1\.0\) marked good", boot, m0)
        downtime = time.monotonic() - t_down
        node.login(m0)
        rc, out = node.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
        assert "version:   1.1.0" in out and "kept-across-slots" in out, out
        assert re.search(r"slot b:\s+1\.1\.0 good \(booted\) \(next boot\)", out), out
        assert re.search(r"slot a:\s+1\.0\.0 good", out), out
        assert "upgrade:   done to 1.1.0" in out, out
        assert www.requests[-1][0] == f"/{b2}"

        # v2 -> v3 whose k3s never turns Ready: the gate fails, the node goes back to b
        m1 = node.mark()
        vm.type(f"sudo osbuilder-agent upgrade {URL}/{b3}\n")
        vm.wait_for(r"installed slot a in [\d.]+ s", 900, m1)
        vm.wait_for(r"osbuilder: slot a", boot, m1)
        vm.wait_for(rf"health gate failed: not healthy within 60 s: node {NODE_NAME} Ready=False",
                    boot, m1)
        m2 = node.mark()
        vm.wait_for(r"osbuilder: slot b", boot, m2)
        node.login(m2)
        rc, out = node.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
        assert "version:   1.1.0" in out and "kept-across-slots" in out, out
        assert re.search(r"slot a:\s+1\.2\.0 bad", out), out
        assert re.search(r"upgrade:\s+failed to 1\.2\.0: health gate: not healthy within 60 s",
                         out), out
        node.sh("sync")
    finally:
        vm.kill()
    rc, fsck = ext4_fsck(node.disk, partitions(node.disk)[1][3], tmp)
    assert rc == 0, fsck
    size_mb = (release.dir / b2).stat().st_size / 1e6
    return (f"upgrade figures ({release.board}, TCG): bundle {size_mb:.1f} MB, install "
            f"{inst.group(1)} s (download excluded), downtime reboot→gate passed {downtime:.0f} s"
            + (f", QEMU power-cycled {vm.power_cycles}x after a hung reset"
               if vm.power_cycles else ""))


PHASES = ("download", "slot write", "selector flip", "first boot")


def power_cut_runs(release: Release, www: Served, tmp: Path, runs: int = 10) -> str:
    """SIGKILLs of QEMU at random instants (OSB_POWER_SEED) of an upgrade, the phases in
    turn. After each, the next boot must reach a good slot whose data fsck clean and still
    holds a file written before the first run. Returns the table for the test to print."""
    rng = random.Random(int(os.environ.get("OSB_POWER_SEED", "7")))
    node = Node(release, tmp, www)
    boot = release.boot_timeout
    rows = []
    vm = node.start()
    node.login(0)
    node.sh("echo kept | sudo tee /var/lib/keep.txt && sync")
    bundles = [release.bundle("1.1.0"), release.bundle("1.0.0")]
    for run_no in range(runs):
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
            # RAUC calls the chooser last: it copies kernel and initrd, then flips
            vm.wait_for(r"boot selector: staging slot", 900, m)
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            vm.wait_for(r"upgrade: rebooting", 900, m)
            vm.wait_for(r"osbuilder: slot", boot, m)
            time.sleep(rng.uniform(0.0, 30.0))
        vm.kill()
        parts = partitions(node.disk)[1]
        rc, fsck = ext4_fsck(node.disk, parts[3], tmp)
        fat = fat_fsck(node.disk, parts[0], tmp)
        t0 = time.monotonic()
        vm = node.start()
        slot = vm.wait_for(r"osbuilder: slot ([ab])", boot).group(1)
        node.login(0)
        out = node.settled(slot)
        good = re.search(rf"slot {slot}:\s+\S+ good", out) is not None and "kept" in out
        rows.append((run_no + 1, phase, slot, good, rc, not fat, time.monotonic() - t0))
        assert good, f"run {run_no + 1} ({phase}): booted slot {slot} not good:\n{out}"
        assert rc == 0, f"run {run_no + 1} ({phase}): data partition not clean:\n{fsck}"
        assert not fat, f"run {run_no + 1} ({phase}): boot partition files damaged:\n{fat}"
    vm.kill()
    lines = [f"power-cut runs ({release.board}, TCG)",
             "run  phase          booted  good  data fsck  boot files  back to good slot"]
    lines += [f"{n:3}  {phase:13}  {slot:6}  {'yes' if good else 'NO':4}  "
              f"{'clean' if rc == 0 else rc:9}  {'intact' if fat_ok else 'DAMAGED':10}  "
              f"{dt:.0f} s"
              for n, phase, slot, good, rc, fat_ok, dt in rows]
    lines.append(f"survived {sum(1 for r in rows if r[3] and r[4] == 0 and r[5])}/{len(rows)}")
    return "\n".join(lines)
