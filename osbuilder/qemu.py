"""Boot a built image in QEMU: `osbuilder run`, the e2e tests and `make bench` share this.

UEFI boards boot through their firmware from the disk image unchanged. TCG by default:
/dev/kvm can exist and still fail at run time (nested or restricted hosts), so KVM is
only used when asked for:
OSB_QEMU_ACCEL=kvm (`make run ACCEL=kvm`). Networking is QEMU user mode with restrict=on: the guest
reaches nothing but what is forwarded to it explicitly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from osbuilder.boards import Board
from osbuilder.errors import OsbError


def default_accel() -> str:
    accel = os.environ.get("OSB_QEMU_ACCEL", "tcg")
    if accel not in ("tcg", "kvm"):
        raise OsbError(f"OSB_QEMU_ACCEL={accel!r}: expected tcg or kvm")
    return accel


def qemu_argv(
    board: Board, disk: Path, vars_copy: Path, *, serial: str = "mon:stdio",
    host_forwards: tuple[str, ...] = (), extra: tuple[str, ...] = (), accel: str | None = None,
) -> list[str]:
    """argv for one VM; vars_copy is this VM's private copy of the UEFI variable store."""
    q = board.qemu
    if q is None:
        raise OsbError(f"{board.source}: board has no `qemu:` section; it cannot be emulated")
    if shutil.which(q.binary) is None:
        raise OsbError(f"{q.binary} not found: apt-get install qemu-system-x86 (or -arm)")
    if not Path(q.firmware).is_file():
        raise OsbError(f"UEFI firmware {q.firmware} missing: apt-get install {q.firmware_package}")
    accel = accel or default_accel()
    nic = "user,model=virtio-net-pci,restrict=on" + "".join(f",hostfwd={f}" for f in host_forwards)
    argv = [
        q.binary, "-accel", accel, "-machine", q.machine,
        "-cpu", "host" if accel == "kvm" else q.cpu,
        "-m", str(q.memory_mib), "-smp", str(2 if accel == "kvm" else q.smp),
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={q.firmware}",
    ]
    if q.firmware_vars:
        if not vars_copy.exists():
            shutil.copyfile(q.firmware_vars, vars_copy)
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    argv += [
        "-drive", f"if=virtio,format=raw,file={disk}",
        "-nic", nic,
        "-display", "none", "-serial", serial, "-monitor", "none",
        *extra,
    ]
    return argv


class VM:
    """A QEMU process whose serial console is written to a file and matched by regex."""

    def __init__(self, argv: list[str], console_log: Path) -> None:
        self.argv = argv
        self.log = console_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def __enter__(self) -> VM:
        self.log.write_bytes(b"")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def console(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until pattern appears on the console; fail with the console tail if not."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console())
            if m:
                return m
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise OsbError(f"QEMU exited ({self.proc.returncode}) before {pattern!r}: "
                               f"{err}\n--- console tail ---\n{self.console()[-3000:]}")
            if time.monotonic() > deadline:
                raise OsbError(f"{pattern!r} not on the console after {timeout:.0f} s\n"
                               f"--- console tail ---\n{self.console()[-3000:]}")
            time.sleep(0.5)

    def elapsed(self) -> float:
        return time.monotonic() - self.started
