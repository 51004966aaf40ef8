"""OS upgrades on qemu-amd64 under QEMU TCG (systemd-boot boot counting + RAUC):
v1 → v2 over HTTP with the health gate passing, v2 → broken v3 rolled back by itself,
refused bundles (tampered, other CA, other board, downgrade) that touch no slot
(tests/helpers/upgrade_node.py, shared with rpi-arm64), and power cuts (SIGKILL of QEMU)
at random instants of an upgrade.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py); bundles are served from the
host's 127.0.0.1, reached only through QEMU's guestfwd.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Build, require_build_capability
from tests.helpers.http_files import Served, serve_files
from tests.helpers.upgrade_node import (
    Release,
    make_release,
    power_cut_runs,
    upgrade_then_broken_upgrade,
)

pytestmark = [pytest.mark.e2e, pytest.mark.long_leg]

BOOT = 420  # s: a TCG boot on a loaded 2-core host, with k3s stand-in and health gate


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
            qemu_amd64_build: Build) -> Release:
    """After the session's first build (qemu_amd64_build), which the build tests expect to
    be the cold one: this worker's cache may start empty here."""
    require_build_capability()
    return make_release("qemu-amd64", tmp_path_factory.mktemp("upgrade"), build_cache, BOOT)


@pytest.fixture
def www(release: Release) -> Iterator[Served]:
    with serve_files(release.dir) as served:
        yield served


def test_upgrade_then_broken_upgrade_rolls_back(release: Release, www: Served,
                                                tmp_path: Path) -> None:
    print("\n" + upgrade_then_broken_upgrade(release, www, tmp_path))


@pytest.mark.slow
def test_power_cut_at_random_instants_never_loses_a_good_slot(
        release: Release, www: Served, tmp_path: Path) -> None:
    """10 SIGKILLs of QEMU during download, slot write, selector flip and first boot of the
    new slot. After each, the next boot must reach a good slot and data must fsck clean."""
    print("\n" + power_cut_runs(release, www, tmp_path))
