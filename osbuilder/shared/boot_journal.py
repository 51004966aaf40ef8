"""What one full `osbuilder-agent boot` did, in order: the files it wrote, removed and
linked, the directories it made, the user commands it ran, the units it started, the lines
it printed. osbuilder.node.replay keeps the journal beside the digests of what that boot
read, and the next boot whose inputs are the same does it again, without the config's
parser, validator, model or appliers.

The writers note their own steps (osbuilder.shared.file_writes, the agent's configure);
nothing is noted unless a journal was started, so the workstation and the agent's other
commands never keep one.
"""

from __future__ import annotations

from typing import Any

Op = list[Any]  # [kind, arguments...]: see osbuilder.node.replay.OPS


class Journal:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.void: str | None = None  # why this boot cannot be done again as it was


_current: Journal | None = None


def start() -> Journal:
    global _current
    _current = Journal()
    return _current


def stop() -> None:
    global _current
    _current = None


def note(*op: Any) -> None:
    if _current is not None:
        _current.ops.append(list(op))


def void(reason: str) -> None:
    """This boot did something that must not be repeated as it was (a new random
    password shown once): the next boot runs in full."""
    if _current is not None and _current.void is None:
        _current.void = reason
