"""init_cmd / boot_cmd / run_cmd: user commands at fixed points of every boot (k3OS
stage semantics). A failing command is reported, never stops the boot."""

from __future__ import annotations

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.model import Command
from osbuilder.shared.run import run

TIMEOUT_S = 300


def run_commands(stage: str, commands: tuple[Command, ...]) -> list[str]:
    """Run each command; return one warning per failure."""
    warnings = []
    for i, cmd in enumerate(commands):
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        try:
            r = run(argv, capture=True, check=False, timeout=TIMEOUT_S)
        except OsbError as exc:  # not found, or timed out
            warnings.append(f"{stage}[{i}]: {exc}")
            continue
        except OSError as exc:  # not executable, a directory, ...
            warnings.append(f"{stage}[{i}]: {argv[0]}: {exc.strerror}")
            continue
        out = (r.stdout + r.stderr).decode(errors="replace").strip()
        if out:
            print(f"osbuilder-agent: {stage}[{i}]: {out[-500:]}")
        if r.returncode != 0:
            warnings.append(f"{stage}[{i}]: exit {r.returncode}")
    return warnings
