"""A signed qemu-amd64 node for the trust-chain e2e tests: OVMF's Secure Boot firmware with
its own variable store (a new store is in setup mode) and a swtpm TPM 2.0 whose state is a
folder (the same folder: the same TPM; a new one: another machine), an interactive serial
console, and power cycles that keep all three.

Console lines come from: systemd-boot 257 (src/boot/secure-boot.c: "Enrolling secure boot
keys from directory: %ls", "Custom Secure Boot keys successfully enrolled, rebooting the
system now!"; src/boot/boot.c: "Error loading %ls: %m" when the firmware's LoadImage
refuses an image), initramfs-tools' panic() ("Rebooting automatically due to panic=
boot argument") and osbuilder's initramfs scripts and agent.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path

import yaml

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, Swtpm, interactive_serial, qemu_argv, scratch_disk
from tests.helpers.console_node import ConsoleNode
from tests.helpers.image import fat_write, partitions

PW = "trust-pw"
NODE_NAME = "trust-n1"
CONFIG: dict[str, object] = {
    "hostname": "trust-node",
    "k3os": {"password": PW, "k3s_args": [f"--node-name={NODE_NAME}"]},
    "osbuilder": {"upgrade": {"health_timeout": 60}}}
BOOT = 900  # s: a first boot (enrollment reset, LUKS format) under TCG on a loaded host
ENROLLING = r"Enrolling secure boot keys from directory: \\loader\\keys\\auto"
ENROLLED = r"Custom Secure Boot keys successfully enrolled, rebooting the system now!"
RECOVERY = r"RECOVERY KEY \(shown once, keep it safe\): ([a-z]{8}(?:-[a-z]{8}){7})"
STATUS = r"osbuilder-agent: status (.*)"


def root_hash(build_log: str) -> str:
    """The root hash the build's verity stage reported."""
    m = re.search(r"dm-verity: hash tree [\d.]+ MB, root hash ([0-9a-f]{64})", build_log)
    assert m, build_log[-2000:]
    return m.group(1)


def status_fields(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


class TrustNode(ConsoleNode):
    """One machine: a disk, a UEFI variable store and a TPM, under `folder`."""

    def __init__(self, folder: Path, disk: Path, guest_forwards: tuple[str, ...] = (),
                 secure_boot: bool = True) -> None:
        self.folder = folder
        self.hostname, self.password, self.boot = "trust-node", PW, BOOT
        # False: the plain firmware and no TPM, as an unsigned image boots (for comparison)
        self.secure_boot = secure_boot
        folder.mkdir(parents=True, exist_ok=True)
        self.disk = disk
        self.vars = folder / "vars.fd"  # made from the firmware's empty template: setup mode
        self.tpm_state = folder / "tpm"
        self.forwards = guest_forwards
        self.vm: VM | None = None
        self.boots = 0
        self._stack = contextlib.ExitStack()

    @classmethod
    def fresh(cls, image: Path, folder: Path, config: dict[str, object] = CONFIG,
              guest_forwards: tuple[str, ...] = (), secure_boot: bool = True) -> TrustNode:
        folder.mkdir(parents=True, exist_ok=True)
        disk = scratch_disk(image, folder / "disk.img", "4G")
        fat_write(disk, partitions(disk)[1][0], "config.yaml", yaml.safe_dump(config).encode(),
                  folder)
        return cls(folder, disk, guest_forwards, secure_boot)

    def another_machine(self, folder: Path) -> TrustNode:
        """This disk in another machine: its own firmware variables and TPM."""
        disk = folder / "disk.img"
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", self.disk, disk], check=True)
        return TrustNode(folder, disk, self.forwards)

    def start(self) -> VM:
        self.boots += 1
        tpm = (self._stack.enter_context(Swtpm(self.tpm_state)).socket if self.secure_boot
               else None)
        serial, extra = interactive_serial(self.folder / "console.sock")
        argv = qemu_argv(load_board("qemu-amd64"), self.disk, self.vars, serial=serial,
                         extra=extra, guest_forwards=self.forwards,
                         secure_boot=self.secure_boot, tpm=tpm)
        self.vm = VM(argv, self.folder / f"console-{self.boots}.log",
                     self.folder / "console.sock").__enter__()
        return self.vm

    def stop(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.vm = None
        self._stack.close()  # the swtpm ends with its QEMU (--terminate); make sure

    def poweroff(self, timeout: float = 180) -> None:
        """A clean shutdown from the logged-in shell; QEMU exits when the guest is off."""
        assert self.vm is not None and self.vm.proc is not None
        self.vm.type("sudo poweroff\n")
        self.vm.proc.wait(timeout)
        self.stop()

    def power_cycle(self) -> VM:
        self.stop()
        time.sleep(1)
        return self.start()


def first_boot(node: TrustNode, hash_a: str) -> tuple[str, dict[str, str], float]:
    """A fresh machine's first boot: systemd-boot enrolls the fleet's keys (setup mode)
    and resets; the signed UKI opens the verified root; the initramfs encrypts the data
    partition and shows the recovery key once; the agent applies the config.
    (recovery key, status line fields, seconds from power-on to `applied config`)."""
    vm = node.start()
    vm.wait_for(ENROLLING, 300)
    vm.wait_for(ENROLLED, 120)
    vm.wait_for(rf"osbuilder: verity: root PARTLABEL=OSB_ROOT_A verified against {hash_a}",
                BOOT)
    vm.wait_for(r"osbuilder: data: first boot: encrypting /dev/vda4", 120)
    key = vm.wait_for(RECOVERY, 300).group(1)
    vm.wait_for(r"osbuilder: slot a, data on /dev/mapper/osb-data", 120)
    vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml, role=server, "
                r"hostname=trust-node\)", BOOT)
    applied = vm.elapsed()
    fields = status_fields(vm.wait_for(STATUS, 300).group(1))
    return key, fields, applied
