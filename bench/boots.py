"""Boot a disk under QEMU and time it from QEMU's start, for `make bench` and the boot-ratio
guard: to a console line (osbuilder's `applied config`) and to the login prompt; then,
logged in on the console, what systemd saw (`systemd-analyze plot` as SVG, the critical
chain, blame), copied off through the console as gzip+base64 text; then a clean power-off,
so that the next boot of the same disk is a real second boot.

The same disk and UEFI variable store booted twice is a node's first boot and the reboot
after it. Only ratios between images booted in the same run mean anything: TCG on a
shared machine varies with its load.
"""

from __future__ import annotations

import base64
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.host.boards import Board
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv

BOOT_TIMEOUT = 900.0  # s: an arm64 first boot under TCG on a loaded 2-core host


@dataclass(frozen=True)
class Login:
    hostname: str
    user: str
    password: str
    root: bool = False  # the user is root: no sudo for the power-off


@dataclass
class Boot:
    login_s: float
    applied_s: float | None = None
    plot_svg: bytes = b""
    texts: dict[str, str] = field(default_factory=dict)  # name -> systemd-analyze output


def _between(text: str, begin: str, end: str) -> str:
    m = re.search(rf"{begin}\r?\n(?s:(.*?))\r?\n{end}", text)
    if m is None:
        raise ValueError(f"no {begin} ... {end} in the console output")
    return m.group(1)


def fetch_svg(vm: VM) -> bytes:
    """`systemd-analyze plot`, gzip+base64 through the console (TCG's UART is slow)."""
    for _ in range(3):  # a console line from a service can land inside the text
        out = vm.shell("echo SVG-BEGIN; systemd-analyze plot | gzip -9 | base64 -w 76; "
                       "echo SVG-END", timeout=600)
        try:
            text = _between(out, "SVG-BEGIN", "SVG-END")
            return gzip.decompress(base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", text)))
        except (ValueError, OSError, EOFError):
            continue
    raise ValueError("systemd-analyze plot did not come through the console")


def analyse(vm: VM) -> tuple[bytes, dict[str, str]]:
    # plot and blame need the boot finished; k3s (Type=notify) and the health gate are
    # jobs of the boot too, so wait for them, a bounded time
    vm.shell("timeout 600 systemctl is-system-running --wait", timeout=700)
    texts = {}
    for name, cmd in (("summary", "systemd-analyze"),
                      ("critical-chain", "systemd-analyze critical-chain --no-pager"),
                      ("blame", "systemd-analyze blame --no-pager | head -40")):
        texts[name] = vm.shell(f"echo TXT-BEGIN; SYSTEMD_COLORS=0 {cmd}; echo TXT-END",
                               timeout=300)
        texts[name] = _between(texts[name], "TXT-BEGIN", "TXT-END").replace("\r", "")
    return fetch_svg(vm), texts


def boot(board: Board, disk: Path, vars_fd: Path, work: Path, login: Login, *,
         applied: str | None = None, analyse_boot: bool = False,
         poweroff: bool = True, timeout: float = BOOT_TIMEOUT) -> Boot:
    """One boot of disk; vars_fd persists between boots of the same disk (UEFI boards)."""
    sock = work / "console.sock"
    sock.unlink(missing_ok=True)
    serial, extra = interactive_serial(sock)
    argv = qemu_argv(board, disk, vars_fd, serial=serial, extra=extra)
    with VM(argv, work / f"console-{disk.stem}.log", sock) as vm:
        applied_s = None
        if applied is not None:
            vm.wait_for(applied, timeout)
            applied_s = round(vm.elapsed(), 1)
        vm.wait_for(rf"^{re.escape(login.hostname)} login:", timeout)
        result = Boot(round(vm.elapsed(), 1), applied_s)
        if not (analyse_boot or poweroff):
            return result
        vm.login(login.user, login.password, timeout=300)
        if analyse_boot:
            result.plot_svg, result.texts = analyse(vm)
        if poweroff:
            sudo = "" if login.root else f"echo {login.password} | sudo -S "
            vm.type(f"{sudo}systemctl poweroff\n")
            vm.wait_exit(300)
    return result


def top_units(blame: str, n: int = 5) -> list[str]:
    """The n slowest units of `systemd-analyze blame` ("1.234s unit"), as "unit 1.2s"."""
    rows = []
    for line in blame.splitlines():
        m = re.match(r"\s*((?:\d+min )?[\d.]+m?s)\s+(\S+)", line)
        if m:
            rows.append(f"{m.group(2)} {m.group(1)}")
    return rows[:n]
