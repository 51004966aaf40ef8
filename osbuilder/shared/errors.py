"""The one error type users see: a message that says what was wrong and what to do."""


class OsbError(Exception):
    """A problem the user can act on; the CLI prints it without a traceback."""


class CommandError(OsbError):
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
