"""init_cmd / boot_cmd / run_cmd: user commands at fixed points of every boot (k3OS
stage semantics: rancher/k3os pkg/command runs each with `sh -c` and stops a list at its
first failure). A failing command is reported, never stops the boot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run

if TYPE_CHECKING:  # not at run time: a replayed boot's commands need no config model
    from osbuilder.shared.nodeconfig.model import Command

TIMEOUT_S = 300


def run_commands(stage: str, commands: tuple[Command, ...],
                 env: dict[str, str] | None = None) -> list[str]:
    """Run the commands in order, with the config's environment, until one fails; return a
    warning for the failure and one for the commands not run."""
    warnings: list[str] = []
    for i, cmd in enumerate(commands):
        if warnings:
            warnings.append(f"{stage}[{i}:]: not run: {stage}[{i - 1}] failed, and a list "
                            "stops at its first failure (as on k3OS)")
            break
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        try:
            r = run(argv, capture=True, check=False, timeout=TIMEOUT_S, env=env)
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
