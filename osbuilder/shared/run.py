"""The single wrapper for external commands: argv lists only, logged, typed failures."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from osbuilder.shared.errors import CommandError, ExternalError

log = logging.getLogger("osbuilder.shared.run")

STDERR_TAIL_LINES = 25
TAIL_BYTES = 64 << 10  # of a log_file, enough for STDERR_TAIL_LINES long lines


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv; on failure raise CommandError with the last lines of stderr.

    stdout is captured only when asked; stderr is always captured so a failure can
    say why, and is logged at debug level when the command succeeds. With log_file,
    stdout and stderr both go to that file instead (tools that trace every step, such
    as diskimage-builder, print megabytes), and a failure quotes the file's tail.
    """
    args = [str(a) for a in argv]
    log.debug("$ %s", " ".join(args))
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    if log_file is not None and capture:
        raise ValueError("run: capture and log_file exclude each other")
    try:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(log_file.open("wb")) if log_file is not None else None
            proc = subprocess.run(
                args,
                env=full_env,
                cwd=cwd,
                input=input,
                stdout=sink or (subprocess.PIPE if capture else subprocess.DEVNULL),
                stderr=sink or subprocess.PIPE,
                check=False,
                timeout=timeout,
            )
    except FileNotFoundError as exc:
        raise ExternalError(f"host tool not found: {args[0]} (install it, see `make deps`)"
                            ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout} s") from exc
    if log_file is not None:
        proc.stderr = log_file.read_bytes()[-TAIL_BYTES:]
    stderr = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, _tail(stderr))
    if stderr.strip():
        log.debug("%s stderr: %s", args[0], stderr.rstrip()[-2000:])
    return proc


def _tail(stderr: str) -> str:
    return "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])


@contextlib.contextmanager
def stream(argv: Sequence[str | Path]) -> Iterator[IO[bytes]]:
    """Run argv with its stdout as a pipe the caller reads (a decompressor feeding a
    writer); leaving the block waits for the command and raises CommandError if it failed.
    If the block raises, the command is killed. stderr goes to a temp file: a pipe nobody
    reads could fill and stall the command."""
    import tempfile  # here: the node agent's boot runs commands, never stream()

    args = [str(a) for a in argv]
    log.debug("$ %s |", " ".join(args))
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err)
        except FileNotFoundError as exc:
            raise ExternalError(f"host tool not found: {args[0]} (install it, see `make deps`)"
                           ) from exc
        assert proc.stdout is not None
        try:
            yield proc.stdout
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        returncode = proc.wait()
        if returncode != 0:
            err.seek(0)
            raise CommandError(args, returncode, _tail(err.read().decode(errors="replace")))


def output(argv: Sequence[str | Path], **kwargs: object) -> str:
    """Run argv and return its stdout as text."""
    proc = run(argv, capture=True, **kwargs)  # type: ignore[arg-type]
    return proc.stdout.decode()


def require_tools(tools: Mapping[str, str]) -> None:
    """Fail early, naming every missing host tool and the Debian package that has it."""
    import shutil

    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in tools.items()
               if shutil.which(tool) is None]
    if missing:
        raise ExternalError(
            "missing host tools: " + ", ".join(missing) + "\n  run `make deps` to install them"
        )


def run_interactive(argv: Sequence[str | Path]) -> int:
    """Run argv on this terminal (stdin, stdout and stderr inherited: a VM's serial
    console); returns its exit status."""
    args = [str(a) for a in argv]
    log.debug("$ %s", " ".join(args))
    try:
        return subprocess.run(args, check=False).returncode
    except FileNotFoundError as exc:
        raise ExternalError(f"host tool not found: {args[0]} (install it, see `make deps`)"
                            ) from exc
