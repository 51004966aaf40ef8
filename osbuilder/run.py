"""The single wrapper for external commands: argv lists only, logged, typed failures."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from osbuilder.errors import CommandError, OsbError

log = logging.getLogger("osbuilder.run")

STDERR_TAIL_LINES = 25


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv; on failure raise CommandError with the last lines of stderr.

    stdout is captured only when asked; stderr is always captured so a failure can
    say why, and is logged at debug level when the command succeeds.
    """
    args = [str(a) for a in argv]
    log.debug("$ %s", " ".join(args))
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            args,
            env=full_env,
            cwd=cwd,
            input=input,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise OsbError(f"host tool not found: {args[0]} (install it, see `make deps`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout} s") from exc
    stderr = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        tail = "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
        raise CommandError(args, proc.returncode, tail)
    if stderr.strip():
        log.debug("%s stderr: %s", args[0], stderr.rstrip()[-2000:])
    return proc


def output(argv: Sequence[str | Path], **kwargs: object) -> str:
    """Run argv and return its stdout as text."""
    proc = run(argv, capture=True, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode()


def require_tools(tools: Mapping[str, str]) -> None:
    """Fail early, naming every missing host tool and the Debian package that has it."""
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in tools.items()
               if shutil.which(tool) is None]
    if missing:
        raise OsbError(
            "missing host tools: " + ", ".join(missing) + "\n  run `make deps` to install them"
        )
