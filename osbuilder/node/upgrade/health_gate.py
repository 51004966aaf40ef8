"""The health gate's checks: k3s active, node Ready, and the user's own checks from config."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from osbuilder.node.upgrade.node_ready import node_ready
from osbuilder.shared.nodeconfig.model import HealthCheck

Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def unit_active(units: tuple[str, ...]) -> Check:
    def check() -> tuple[bool, str]:
        for u in units:
            r = subprocess.run(["systemctl", "is-active", "--quiet", u], check=False)
            if r.returncode == 0:
                return True, f"{u} active"
        return False, f"k3s not active ({' / '.join(units)})"
    return check


def user_check(hc: HealthCheck) -> Check:
    def check() -> tuple[bool, str]:
        if hc.url:
            try:
                with urllib.request.urlopen(hc.url, timeout=10) as resp:
                    return resp.status < 400, f"{hc.url}: HTTP {resp.status}"
            except OSError as exc:
                return False, f"{hc.url}: {exc}"
        argv = ["/bin/sh", "-c", hc.command] if isinstance(hc.command, str) else list(
            hc.command or ())
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"check {hc.name}: {exc}"
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        return r.returncode == 0, f"check {hc.name}: exit {r.returncode} {tail[0]}".rstrip()
    return check


def standard_checks(node: str, require_ready: bool, extra: tuple[HealthCheck, ...]
                    ) -> list[Check]:
    checks = [unit_active(("k3s.service", "k3s-agent.service"))]
    if require_ready:
        checks.append(lambda: node_ready(node))
    return checks + [user_check(h) for h in extra]


def evaluate(checks: list[Check], deadline_s: float, clock: Callable[[], float],
             sleep: Callable[[float], None], interval_s: float = 5.0,
             say: Callable[[str], None] = lambda s: None) -> Verdict:
    """Poll all checks until every one passes at once, or the deadline passes (then the
    verdict names the check that failed last)."""
    end = clock() + deadline_s
    last = ""
    while True:
        results = [c() for c in checks]
        failed = [why for ok, why in results if not ok]
        if not failed:
            return Verdict(True, "; ".join(why for _, why in results))
        if failed[0] != last:
            say(f"health gate waiting: {failed[0]}")
            last = failed[0]
        if clock() >= end:
            return Verdict(False, f"not healthy within {deadline_s:.0f} s: {failed[0]}")
        sleep(interval_s)
