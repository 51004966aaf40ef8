"""Bundle acceptance: board compatibility and version order."""

from __future__ import annotations

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.versions import check_bundle, version_key


@pytest.mark.parametrize(("older", "newer"), [
    ("1.0.0", "1.0.1"), ("1.2.9", "1.2.10"), ("1.3.0-rc1", "1.3.0"), ("1.9", "2.0.0"),
    ("1.3.0-rc1", "1.3.0-rc2"),
])
def test_version_order(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


def check(version: str, compatible: str = "osbuilder-qemu-amd64", allow: bool = False) -> None:
    check_bundle(compatible=compatible, version=version,
                 system_compatible="osbuilder-qemu-amd64", running_version="1.2.0",
                 allow_downgrade=allow)


def test_newer_and_same_version_are_accepted() -> None:
    check("1.3.0")
    check("1.2.0")


def test_other_board_is_refused() -> None:
    with pytest.raises(OsbError, match="bundle is for 'osbuilder-rpi-arm64', this node is "
                                       "'osbuilder-qemu-amd64'"):
        check("1.3.0", compatible="osbuilder-rpi-arm64")


def test_downgrade_needs_the_flag() -> None:
    with pytest.raises(OsbError,
                       match=r"1\.1\.0 is older than the running 1\.2\.0.*--allow-downgrade"):
        check("1.1.0")
    check("1.1.0", allow=True)
