"""Image versions and the bundle acceptance rules that need no node.

One scheme, checked when an image is built (`--version`) and compared the same way on
the node: Semantic Versioning 2.0.0 (https://semver.org): MAJOR.MINOR.PATCH, then an
optional pre-release (`-rc.1`) and build metadata (`+git.abc`), with an optional leading
`v` (`v1.1.0` is 1.1.0, as git tags spell it). Precedence follows semver §11: numbers
numerically, a pre-release before its release, pre-release identifiers numeric < text,
a shorter list of equal identifiers first; build metadata does not count (§10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from osbuilder.shared.errors import OsbError

# semver.org's own regular expression (numeric identifiers without leading zeros), with
# the optional `v` in front; the characters also keep a version safe in file names
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
MAX_LENGTH = 64  # it names files and RAUC's bundle version: keep it short
SCHEME = "a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], optionally with a " \
         "leading v, e.g. 1.2.0, v1.3.0-rc.1"


@dataclass(frozen=True, order=True)
class Version:
    """Compare with <, ==: the fields are ordered as semver's precedence wants."""

    core: tuple[int, int, int]
    # a release sorts after each of its pre-releases: (1,) for a release, (0, ids) else
    pre: tuple[int, tuple[tuple[int, int, str], ...]]


def parse_version(text: str) -> Version:
    """The Version of text; raises ValueError naming the scheme."""
    m = SEMVER.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if m is None:
        raise ValueError(f"{text!r} is not {SCHEME}")
    major, minor, patch, pre, _build = m.groups()
    if pre is None:
        return Version((int(major), int(minor), int(patch)), (1, ()))
    # numeric identifiers sort before text ones (semver §11.4.3)
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return Version((int(major), int(minor), int(patch)), (0, ids))


def is_version(text: str) -> bool:
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def check_bundle(*, compatible: str, version: str, system_compatible: str,
                 running_version: str, allow_downgrade: bool) -> None:
    """Raise a clear error for a bundle this node must not install."""
    if compatible != system_compatible:
        raise OsbError(f"bundle is for {compatible!r}, this node is {system_compatible!r}: "
                       "refusing a bundle built for another board")
    try:
        new = parse_version(version)
    except ValueError as exc:
        raise OsbError(f"bundle version {exc}: refusing it") from None
    if allow_downgrade or not is_version(running_version):
        # an image built before versions were checked: any valid version is an upgrade
        return
    if new < parse_version(running_version):
        raise OsbError(f"bundle version {version} is older than the running {running_version}: "
                       "refusing a downgrade (use --allow-downgrade to force it)")
