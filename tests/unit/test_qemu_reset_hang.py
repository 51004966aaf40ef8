"""A VM whose guest reset never comes back (no firmware output after the kernel's
"reboot: Restarting system", seen in CI after an upgrade's reboot) is power-cycled by
VM.wait_for, and the console log goes on so earlier offsets stay valid.

TEST DOUBLE for qemu-system-*: a script that listens on the console socket and waits for
the connection before it "runs", as QEMU does with `-chardev socket,server=on,wait=on`
(interactive_serial), then prints one boot per start (a count in a file) and hangs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from osbuilder.host.qemu import RESET_LINE, VM, interactive_serial
from osbuilder.shared.errors import OsbError

FAKE_QEMU = r'''
import os, socket, sys, time
sock_path, count_file, *boots = sys.argv[1:]
n = int(open(count_file).read()) if os.path.exists(count_file) else 0
open(count_file, "w").write(str(n + 1))
if os.path.exists(sock_path):
    os.unlink(sock_path)
server = socket.socket(socket.AF_UNIX)
server.bind(sock_path)
server.listen(1)
conn, _ = server.accept()
conn.sendall(boots[min(n, len(boots) - 1)].encode())
if os.environ.get("FAKE_QEMU_EXITS"):  # as QEMU does at a reset with -no-reboot
    time.sleep(0.05)
    sys.exit(0)
time.sleep(600)
'''


def fake_vm(tmp: Path, *boots: str) -> VM:
    script = tmp / "fake_qemu.py"
    script.write_text(FAKE_QEMU)
    serial, _ = interactive_serial(tmp / "console.sock")
    assert serial.startswith("chardev:")  # the socket form, which VM records itself
    argv = [sys.executable, str(script), str(tmp / "console.sock"), str(tmp / "starts"), *boots]
    vm = VM(argv, tmp / "console.log", tmp / "console.sock")
    vm.reset_silence = 1.0
    return vm


def test_silence_after_the_reset_line_power_cycles_once(tmp_path: Path) -> None:
    with fake_vm(tmp_path, f"slot a\n[  9.1] {RESET_LINE}\r\n",
                 "BdsDxe: loading Boot0002\nosbuilder: slot b\n") as vm:
        mark = vm.wait_for("slot a", 30).end()
        m = vm.wait_for(r"osbuilder: slot (\w)", 30, mark)
        assert m.group(1) == "b"
        assert vm.power_cycles == 1
        assert (tmp_path / "starts").read_text() == "2"
        log = vm.console()
        assert log.index(RESET_LINE) < log.index("power-cycled") < log.index("slot b")


def test_a_console_that_goes_on_after_the_reset_is_left_alone(tmp_path: Path) -> None:
    # firmware output after the reset line: the machine did reset, whatever comes next
    with fake_vm(tmp_path, f"{RESET_LINE}\nBdsDxe: failed to load Boot0001\n") as vm:
        with pytest.raises(OsbError, match="not on the console after 3 s"):
            vm.wait_for("osbuilder: slot", 3)
        assert vm.power_cycles == 0
        assert (tmp_path / "starts").read_text() == "1"


def test_a_machine_that_hangs_at_every_reset_still_fails_at_the_timeout(tmp_path: Path) -> None:
    # each start prints its own reset line and hangs: each is a new hang, power-cycled in
    # turn, and the wait still ends when its time is up, naming what it waited for
    with fake_vm(tmp_path, f"{RESET_LINE}\n") as vm:
        with pytest.raises(OsbError, match="'osbuilder: slot' not on the console after 5 s"):
            vm.wait_for("osbuilder: slot", 5)
        assert vm.power_cycles >= 2
        assert vm.console().count("power-cycled") == vm.power_cycles


def test_a_qemu_that_exited_at_the_reset_is_not_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_EXITS", "1")
    with fake_vm(tmp_path, f"{RESET_LINE}\n") as vm:
        vm.reset_silence = 0.3  # shorter than wait_for's poll: silence alone would cycle
        with pytest.raises(OsbError, match=r"QEMU exited \(0\) before 'osbuilder: slot'"):
            vm.wait_for("osbuilder: slot", 10)
        assert vm.power_cycles == 0
        assert (tmp_path / "starts").read_text() == "1"
