"""Bundle acceptance: board compatibility and version order."""

from __future__ import annotations

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.versions import check_bundle, parse_version


@pytest.mark.parametrize(("older", "newer"), [
    ("1.0.0", "1.0.1"), ("1.2.9", "1.2.10"), ("1.3.0-rc1", "1.3.0"), ("1.9.0", "2.0.0"),
    ("1.3.0-rc1", "1.3.0-rc2"), ("1.0.0", "v1.1.0"), ("v1.0.0", "1.0.1"),
    # semver.org's own precedence example (§11)
    ("1.0.0-alpha", "1.0.0-alpha.1"), ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("1.0.0-alpha.beta", "1.0.0-beta"), ("1.0.0-beta", "1.0.0-beta.2"),
    ("1.0.0-beta.2", "1.0.0-beta.11"), ("1.0.0-beta.11", "1.0.0-rc.1"),
    ("1.0.0-rc.1", "1.0.0"),
])
def test_version_order(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)
    assert not parse_version(newer) < parse_version(older)


def test_build_metadata_and_v_do_not_count() -> None:
    assert parse_version("v1.2.0+git.abc") == parse_version("1.2.0")


@pytest.mark.parametrize("bad", ["1.0 beta", "../../x", "1.0", "01.0.0", "1.0.0-",
                                 "1.0.0\n", "V1.0.0", "1.0.0-" + "a" * 60, ""])
def test_other_strings_are_not_versions(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a semantic version"):
        parse_version(bad)


def test_v_prefixed_upgrade_is_not_a_downgrade() -> None:
    check_bundle(compatible="c", version="v1.1.0", system_compatible="c",
                 running_version="1.0.0", allow_downgrade=False)


def test_bundle_with_a_bad_version_is_refused_and_an_old_node_version_is_not() -> None:
    with pytest.raises(OsbError, match=r"bundle version '1\.0 beta' is not a semantic"):
        check("1.0 beta")
    # a node built before versions were checked accepts any valid version
    check_bundle(compatible="c", version="0.0.1", system_compatible="c",
                 running_version="1.0 beta", allow_downgrade=False)


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
