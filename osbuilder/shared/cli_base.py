"""What both command lines (`osbuilder`, `osbuilder-agent`) share: a parser that suggests
the name you meant, global flags accepted before or after the subcommand, shell
completion when argcomplete is installed. The wall every command runs inside is
osbuilder.shared.cli_guard (no argparse: the node's `boot` runs without a parser).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from osbuilder.shared.errors import ExitCode, exit_codes_text

# argparse's message for a bad choice (Python 3.11-3.13 spell it the same way)
INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped subcommand or choice, and exit code
    ExitCode.USAGE (argparse's own 2) for every command-line mistake."""

    def error(self, message: str) -> NoReturn:
        m = INVALID_CHOICE.search(message)
        if m:
            message += did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def global_flags() -> argparse.ArgumentParser:
    """A parent for every subcommand's parser, so `osbuilder build -v` works like
    `osbuilder -v build`. SUPPRESS: a subcommand that was not given -v leaves the value
    the main parser set alone."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log every command run; show the traceback of an internal error")
    return p


def main_parser(prog: str, description: str, version: str, epilog: str = "") -> Parser:
    p = Parser(prog=prog, description=description,
               epilog=(epilog + "\n\n" if epilog else "") + exit_codes_text(),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{prog} {version}")
    p.add_argument("-v", "--verbose", action="store_true", default=False,
                   help="log every command run; show the traceback of an internal error")
    return p


class SubCommands:
    """add_parser() of an argparse subparsers action, each parser taking the global flags."""

    def __init__(self, action: Any) -> None:
        self.action = action

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        kw["parents"] = [*kw.get("parents", []), global_flags()]
        parser: argparse.ArgumentParser = self.action.add_parser(name, **kw)
        return parser


def sub_parsers(parser: argparse.ArgumentParser, dest: str, metavar: str = "COMMAND"
                ) -> SubCommands:
    """Subcommands whose parsers are Parsers too (suggestions, exit codes)."""
    return SubCommands(parser.add_subparsers(dest=dest, required=True, metavar=metavar,
                                             parser_class=Parser))


def completer(action: argparse.Action, names: Callable[[], Iterable[str]]) -> None:
    """Complete this option's value from names() (argcomplete reads `completer`)."""
    action.completer = lambda **_: list(names())  # type: ignore[attr-defined]


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete, when it is installed (the workstation's
    venv; the node's image goes without). It does nothing unless the shell's completion
    hook called us, and then it exits after answering."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)
