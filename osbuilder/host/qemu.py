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
import socket as sock_mod
import subprocess
import sys
import threading
import time
from pathlib import Path

from osbuilder.host.boards import Board
from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run


def default_accel() -> str:
    accel = os.environ.get("OSB_QEMU_ACCEL", "tcg")
    if accel not in ("tcg", "kvm"):
        raise OsbError(f"OSB_QEMU_ACCEL={accel!r}: expected tcg or kvm")
    return accel


def qemu_argv(
    board: Board, disk: Path, vars_copy: Path, *, serial: str = "mon:stdio",
    host_forwards: tuple[str, ...] = (), guest_forwards: tuple[str, ...] = (),
    extra: tuple[str, ...] = (), accel: str | None = None, nic_options: tuple[str, ...] = (),
    secure_boot: bool = False, tpm: Path | None = None, network: bool = True,
) -> list[str]:
    """argv for one VM; vars_copy is this VM's private copy of the UEFI variable store.
    nic_options: more user-network options, e.g. tftp=DIR and bootfile=NAME (PXE).
    secure_boot: the board's Secure Boot firmware (its variables start in setup mode);
    tpm: the control socket of a swtpm (Swtpm below), the VM's TPM 2.0; network=False: no
    network card at all (a board without its cable)."""
    q = board.qemu
    if q is None:
        raise OsbError(f"{board.source}: board has no `qemu:` section; it cannot be emulated")
    if shutil.which(q.binary) is None:
        raise OsbError(f"{q.binary} not found: apt-get install qemu-system-x86 (or -arm)")
    firmware = q.firmware
    if secure_boot:
        if q.firmware_secure_boot is None:
            raise OsbError(f"{board.source}: no qemu.firmware_secure_boot: this board's signed "
                           "images cannot be booted in QEMU")
        firmware = q.firmware_secure_boot
    if not Path(firmware).is_file():
        raise OsbError(f"firmware {firmware} missing: apt-get install {q.firmware_package}")
    accel = accel or default_accel()
    nic = "user,model=virtio-net-pci,restrict=on" + "".join(
        [f",hostfwd={f}" for f in host_forwards] + [f",guestfwd={f}" for f in guest_forwards]
        + [f",{o}" for o in nic_options])
    argv = [
        # one TCG thread for all vCPUs: with QEMU 7.2's multi-threaded TCG, a vCPU can run
        # code the other is patching (the kernel's int3-based text_poke) and the guest
        # oopses at boot ("Oops: int3" in sched_clock_cpu), more often on a loaded host
        q.binary, "-accel", "kvm" if accel == "kvm" else "tcg,thread=single",
        # OVMF's Secure Boot build keeps its variables in SMM, where the OS cannot write
        # them: a q35 with SMM and a secure flash
        "-machine", q.machine + (",smm=on" if secure_boot and q.machine == "q35" else ""),
        "-cpu", "host" if accel == "kvm" else q.cpu,
        "-m", str(q.memory_mib), "-smp", str(2 if accel == "kvm" else q.smp),
    ]
    if secure_boot and q.machine == "q35":
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    if q.firmware_type == "bios":  # e.g. U-Boot, which then reads boot.scr from the disk
        argv += ["-bios", firmware]
    else:
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={firmware}"]
    if q.firmware_vars:
        if not vars_copy.exists():
            shutil.copyfile(q.firmware_vars, vars_copy)
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    argv += [
        "-drive", f"if=virtio,format=raw,file={disk}",
        "-nic", nic if network else "none",
        "-display", "none", "-serial", serial, "-monitor", "none",
        *extra,
    ]
    if tpm is not None:
        device = "tpm-tis" if board.arch == "amd64" else "tpm-tis-device"
        argv += ["-chardev", f"socket,id=chrtpm,path={tpm}", "-tpmdev",
                 "emulator,id=tpm0,chardev=chrtpm", "-device", f"{device},tpmdev=tpm0"]
    return argv


class Swtpm:
    """A software TPM 2.0 (swtpm) whose state lives in `state` (one folder per machine:
    the same folder is the same TPM across VM restarts, a new one another machine). It
    serves one QEMU process and ends with it (--terminate)."""

    def __init__(self, state: Path) -> None:
        self.state = state.resolve()  # swtpm chdirs: relative paths would break
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.state / "swtpm.sock"

    def __enter__(self) -> Swtpm:
        if shutil.which("swtpm") is None:
            raise OsbError("swtpm not found: apt-get install swtpm swtpm-tools (make deps-run)")
        self.state.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
             "--ctrl", f"type=unixio,path={self.socket}", "--flags", "startup-clear",
             "--terminate", "--log", f"file={self.state / 'swtpm.log'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.__exit__()
                raise OsbError(f"swtpm did not start: {err.strip()[-300:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scratch_disk(image: Path, dest: Path, size: str) -> Path:
    """A sparse copy of image grown to size (say 4G), to boot as a bigger disk: the data
    partition fills it on first boot, and the built image itself stays untouched."""
    run(["cp", "--sparse=always", image, dest])
    run(["qemu-img", "resize", "-q", "-f", "raw", dest, size])
    return dest


def interactive_serial(sock: Path) -> tuple[str, tuple[str, ...]]:
    """(serial, extra argv) for a console that VM reads and types into through a unix
    socket. QEMU waits for VM to connect before it starts the guest, so nothing is lost;
    VM writes the log itself because QEMU 7.2's chardev logfile repeats bytes whenever a
    write to a full socket returns EAGAIN."""
    return "chardev:console0", (
        "-chardev", f"socket,id=console0,path={sock},server=on,wait=on",
    )


RESET_LINE = "reboot: Restarting system"  # the kernel's last word before it resets the machine


class VM:
    """A QEMU process whose serial console is written to a file and matched by regex;
    with `socket` (see interactive_serial) the console can also be typed into.

    An emulated machine sometimes never comes back from a guest's reset: after the kernel's
    RESET_LINE, the firmware prints nothing, ever, and QEMU spins (CI on 2026-12-04: OVMF
    silent 420 s after an upgrade's reboot; kubevirt/kubevirt#6885 describes the same with
    TCG). Everything the guest does ends before that line, so when the console stays silent
    `reset_silence` seconds after it, wait_for powers the VM off and on again, as a person
    would, and says so on stderr (`power_cycles` counts them). Only a VM whose console this
    class records itself (socket) is power-cycled: QEMU truncates a file: console when it
    starts, which would lose the offsets callers wait from."""

    reset_silence = 120.0

    def __init__(self, argv: list[str], console_log: Path, socket: Path | None = None) -> None:
        self.argv = argv
        self.log = console_log
        self.socket = socket
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.power_cycles = 0
        self._sock: sock_mod.socket | None = None
        self._cycled_at = -1  # console offset of the reset line already power-cycled for
        self._size, self._grew = 0, 0.0

    def __enter__(self) -> VM:
        self.log.write_bytes(b"")
        self.started = time.monotonic()
        self._start()
        return self

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if self.socket is not None:
            self._sock = self._connect(self.socket)
            threading.Thread(target=self._record, args=(self._sock, self.log),
                             daemon=True).start()

    def power_cycle(self) -> None:
        """Pull the plug and power on again: same disk and firmware variables; the console
        log goes on, so offsets taken before stay valid."""
        self.kill()
        self.power_cycles += 1
        with self.log.open("ab") as f:
            f.write(b"\n[host: QEMU power-cycled]\n")
        self._start()

    def _hung_after_reset(self, text: str) -> bool:
        """True once per reset: the console ends with the kernel's RESET_LINE and has not
        grown for reset_silence seconds (wait_for asks only while QEMU runs)."""
        now = time.monotonic()
        if len(text) != self._size:
            self._size, self._grew = len(text), now
        at = text.rfind(RESET_LINE)
        if (self.socket is None or at <= self._cycled_at or text[at + len(RESET_LINE):].strip()
                or now - self._grew < self.reset_silence):
            return False
        self._cycled_at = at
        return True

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _connect(self, path: Path, timeout: float = 30) -> sock_mod.socket:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            sock = sock_mod.socket(sock_mod.AF_UNIX, sock_mod.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError:  # not listening yet (or a previous run's socket file)
                sock.close()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise OsbError(f"QEMU's console socket {path} did not open: {err}")
            time.sleep(0.05)

    @staticmethod
    def _record(sock: sock_mod.socket, log: Path) -> None:
        # read at once, always: a full socket stalls the guest's UART
        with log.open("ab") as f:
            try:
                while data := sock.recv(65536):
                    f.write(data)
                    f.flush()
            except OSError:
                pass

    def type(self, text: str) -> None:
        """Type on the serial console (slowly: the guest's UART has a small FIFO)."""
        assert self._sock is not None, "VM started without an interactive console"
        for ch in text.encode():
            self._sock.sendall(bytes([ch]))
            time.sleep(0.01)

    def login(self, user: str, password: str, timeout: float = 120) -> None:
        mark = len(self.console())
        self.type(f"{user}\n")
        self.wait_for(r"[Pp]assword: ?", timeout, since=mark)
        mark = len(self.console())
        self.type(f"{password}\n")
        # bash's prompt (user@host:dir$): ready for input. Not anchored at the line end:
        # services may print on the console right after it.
        self.wait_for(r"\w@[\w.-]+:\S*[$#] ", timeout, since=mark)

    def shell(self, command: str, timeout: float = 120) -> str:
        """Run a command in a logged-in console shell; returns its output."""
        tag = f"__osb_{time.monotonic_ns()}__"
        mark = len(self.console())
        self.type(f"{command}; echo {tag}$?\n")
        m = self.wait_for(rf"\n(?s:(.*?)){tag}(\d+)", timeout, since=mark)
        return m.group(1)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the guest to power itself off (QEMU then exits); its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise OsbError(f"QEMU still running {timeout:.0f} s after the power-off\n"
                           f"--- console tail ---\n{self.console()[-3000:]}") from None

    def kill(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def console(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        """Wait until pattern appears on the console (after offset `since`); fail with the
        console tail if it does not."""
        rx = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            text = self.console()
            m = rx.search(text, since)
            if m:
                return m
            assert self.proc is not None
            if self.proc.poll() is not None:  # e.g. at a reset with -no-reboot
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise OsbError(f"QEMU exited ({self.proc.returncode}) before {pattern!r}: "
                               f"{err}\n--- console tail ---\n{self.console()[-3000:]}")
            if self._hung_after_reset(text):
                print(f"QEMU silent {self.reset_silence:.0f} s after the guest's reset: "
                      "power-cycled it", file=sys.stderr)
                self.power_cycle()
                continue
            if time.monotonic() > deadline:
                raise OsbError(f"{pattern!r} not on the console after {timeout:.0f} s\n"
                               f"--- console tail ---\n{self.console()[-3000:]}")
            time.sleep(0.5)

    def elapsed(self) -> float:
        return time.monotonic() - self.started
