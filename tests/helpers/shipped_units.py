"""The systemd units the image ships (overlays/common), read as key -> values."""

from __future__ import annotations

from osbuilder.host.stages.overlay import OVERLAYS_DIR

UNITS_DIR = OVERLAYS_DIR / "common/usr/lib/systemd/system"


def unit_keys(name: str) -> dict[str, list[str]]:
    """Each key of the unit file `name` with its values in file order (a key may repeat);
    comments skipped."""
    keys: dict[str, list[str]] = {}
    for line in (UNITS_DIR / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys
