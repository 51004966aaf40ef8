"""What the QEMU node helpers share (tests/helpers/upgrade_node.py, trust_node.py): a
login on the serial console with sudo ready, commands with their exit codes, and marks in
the console log from which a wait starts."""

from __future__ import annotations

import re
import time

from osbuilder.host.qemu import VM


class ConsoleNode:
    hostname: str
    password: str
    boot: float  # s: boot to the login prompt on this board under TCG on a loaded host
    vm: VM | None

    def login(self, since: int = 0, timeout: float | None = None) -> None:
        assert self.vm is not None
        self.vm.wait_for(rf"{self.hostname} login:", timeout or self.boot, since=since)
        time.sleep(3)  # the k3s stand-in's and the health gate's lines interleave with getty
        self.vm.type("\n")
        self.vm.login("osb", self.password)
        self.vm.shell(f"echo {self.password} | sudo -S true", 60)

    def sh(self, cmd: str, timeout: float = 300) -> tuple[int, str]:
        assert self.vm is not None
        out = self.vm.shell(f"{cmd} 2>&1; echo rc=$?", timeout)
        m = re.search(r"rc=(\d+)\s*$", out)
        assert m, out
        return int(m.group(1)), out

    def mark(self) -> int:
        assert self.vm is not None
        return len(self.vm.console())
