"""Bundle acceptance rules that need no node: compatible string and version order."""

from __future__ import annotations

import re

from osbuilder.shared.errors import OsbError


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders 1.2.10 after 1.2.9 and a release after its pre-release (1.3.0 > 1.3.0-rc1)."""
    main, _, pre = version.partition("-")
    parts = [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+]", main)]
    # a missing pre-release sorts after any pre-release of the same version
    parts.append((1, "") if not pre else (0, pre))
    return tuple(parts)


def check_bundle(*, compatible: str, version: str, system_compatible: str,
                 running_version: str, allow_downgrade: bool) -> None:
    """Raise a clear error for a bundle this node must not install."""
    if compatible != system_compatible:
        raise OsbError(f"bundle is for {compatible!r}, this node is {system_compatible!r}: "
                       "refusing a bundle built for another board")
    if not allow_downgrade and version_key(version) < version_key(running_version):
        raise OsbError(f"bundle version {version} is older than the running {running_version}: "
                       "refusing a downgrade (use --allow-downgrade to force it)")
