"""The wall every command of both command lines (`osbuilder`, `osbuilder-agent`) runs
inside: every failure becomes one line and a documented exit code
(osbuilder.shared.errors.ExitCode), never a traceback. Apart from the parsers
(osbuilder.shared.cli_base), so that `osbuilder-agent boot`, which runs at every boot
before the login prompt, does not import argparse.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from osbuilder.shared.errors import ExitCode, OsbError


def run_guarded(prog: str, command: Callable[[], int], verbose: bool,
                log: bool = True) -> int:
    """Run a parsed command; every failure is one line on stderr and its exit code.
    log=False: the command logs nothing (`osbuilder-agent boot` prints its lines), and
    logging's import (with traceback and threading) took 0.48 s of a boot under
    emulation."""
    if log:
        import logging

        logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                            format="%(name)s: %(message)s")
    try:
        return command()
    except OsbError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`osbuilder boards | head -1`): nothing left to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.FAILED
    except OSError as exc:  # a file or device the command was pointed at
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {str(exc)[:300]} (run with -v "
              "for the traceback, and please report it)", file=sys.stderr)
        return ExitCode.FAILED
