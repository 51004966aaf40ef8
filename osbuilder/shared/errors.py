"""The error types users see, and the exit codes they end a command with.

Each error is a message that says what was wrong and what to do; its class says which
kind of failure it is, and so which exit code both commands (`osbuilder`,
`osbuilder-agent`) end with. The codes are documented in both commands' --help and in
the README.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # an internal error (a bug), or the agent's boot run that fell back
    USAGE = 2  # the command line: an unknown option or command, a value out of range
    BAD_INPUT = 3  # a file, board, config, image, target or environment value
    EXTERNAL = 4  # an external tool, service or device failed (or is missing)
    CANCELLED = 5  # declined at a prompt
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "failed (an internal error: please report it with the -v output)",
    ExitCode.USAGE: "usage error (command line)",
    ExitCode.BAD_INPUT: "bad input (a file, board, config, image, target or setting)",
    ExitCode.EXTERNAL: "an external tool, service or device failed",
    ExitCode.CANCELLED: "cancelled at a prompt",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_codes_text() -> str:
    """The table of exit codes, for --help epilogs."""
    return "exit codes:\n" + "\n".join(f"  {int(c):<3} {what}" for c, what in EXIT_CODES.items())


class OsbError(Exception):
    """A problem the user can act on; the CLI prints it without a traceback."""

    exit_code = ExitCode.BAD_INPUT


class UsageError(OsbError):
    """A command-line value that cannot be used (found after argparse's own checks)."""

    exit_code = ExitCode.USAGE


class ExternalError(OsbError):
    """An external tool, service or device failed, or a needed tool is missing."""

    exit_code = ExitCode.EXTERNAL


class Cancelled(OsbError):
    """The user said no at a prompt."""

    exit_code = ExitCode.CANCELLED


class CommandError(ExternalError):
    """An external command failed; carries its argv, exit code and stderr tail."""

    def __init__(self, argv: list[str], returncode: int, stderr_tail: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        shown = " ".join(argv)
        if len(shown) > 300:
            shown = shown[:300] + " …"
        super().__init__(
            f"command failed (exit {returncode}): {shown}\n{stderr_tail}".rstrip()
        )


class ConfigError(OsbError):
    """A problem with the node config: where (a source, a key path, or both) and what."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")
