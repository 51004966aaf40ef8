"""What `status` says about upgrades: both slots from the boot partition, the last upgrade."""

from __future__ import annotations

from dataclasses import dataclass

from osbuilder.node.paths import AgentPaths
from osbuilder.node.upgrade import slots as choosers
from osbuilder.shared.file_writes import read_json
from osbuilder.shared.layout import SLOTS


@dataclass(frozen=True)
class SlotFact:
    slot: str
    version: str | None  # the slot's os-release, as its chooser recorded it
    state: str  # good (blessed), trial (counting tries, or booted on its last), bad
    tries_left: int | None  # None: blessed or no entry


@dataclass(frozen=True)
class UpgradeFacts:
    primary: str | None
    slots: tuple[SlotFact, ...]
    last_state: str | None
    last_error: str | None
    last_to_version: str | None


def gather(paths: AgentPaths, booted: str | None) -> UpgradeFacts | None:
    """None where there is nothing to say: no slot state on the boot partition, or a user
    who may not read it (it is mounted 0700; `status` runs unprivileged too)."""
    try:
        return _gather(paths, booted)
    except PermissionError:
        return None


def _gather(paths: AgentPaths, booted: str | None) -> UpgradeFacts | None:
    if not choosers.has_state(paths):
        return None
    ch = choosers.chooser(paths, booted or "a")
    slots = []
    for s in SLOTS:
        left = ch.tries_left(s)
        state = ch.state(s)
        if left is not None and (left > 0 or s == booted):  # booted on its last try: trial
            state = "trial"
        slots.append(SlotFact(s, ch.version(s), state, left))
    rec = read_json(paths.upgrade_record) or {}
    return UpgradeFacts(primary=ch.primary(), slots=tuple(slots), last_state=rec.get("state"),
                        last_error=rec.get("error"), last_to_version=rec.get("to_version"))
