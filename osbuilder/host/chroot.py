"""Run a command inside the image rootfs.

The command runs in a private mount namespace (`unshare --mount`) with a fresh /proc,
so nothing stays mounted under the work dir when it ends or is interrupted: deleting a
failed build can never reach the host's /proc or /dev.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from osbuilder.shared.run import run


def chroot_run(root: Path, argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    base_env.update(env or {})
    env_args = [f"{k}={v}" for k, v in sorted(base_env.items())]
    proc = run(
        ["unshare", "--mount", "--propagation=private", "--fork",
         f"--root={root}", "--mount-proc=/proc",
         "/usr/bin/env", "-i", *env_args, *argv],
        capture=True,
    )
    return proc.stdout.decode()
