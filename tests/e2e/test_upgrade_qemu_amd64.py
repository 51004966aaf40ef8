"""OS upgrades on qemu-amd64 under QEMU TCG (systemd-boot boot counting + RAUC):
v1 → v2 over HTTP with the health gate passing, v2 → broken v3 rolled back by itself,
refused bundles (tampered, other CA, other board, downgrade) that touch no slot
(tests/helpers/upgrade_node.py, shared with rpi-arm64), and power cuts (SIGKILL of QEMU)
at random instants of an upgrade.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py); bundles are served from the
host's 127.0.0.1, reached only through QEMU's guestfwd.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_build_capability
from tests.helpers.http_files import Served, serve_files
from tests.helpers.image import ext4_fsck, partitions
from tests.helpers.upgrade_node import URL, Node, Release, make_release, upgrade_then_broken_upgrade

pytestmark = pytest.mark.e2e

BOOT = 420  # s: a TCG boot on a loaded 2-core host, with k3s stand-in and health gate


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Release:
    require_build_capability()
    return make_release("qemu-amd64", tmp_path_factory.mktemp("upgrade"), build_cache, BOOT)


@pytest.fixture
def www(release: Release) -> Iterator[Served]:
    with serve_files(release.dir) as served:
        yield served


def test_upgrade_then_broken_upgrade_rolls_back(release: Release, www: Served,
                                                tmp_path: Path) -> None:
    print("\n" + upgrade_then_broken_upgrade(release, www, tmp_path))


PHASES = ("download", "slot write", "selector flip", "first boot")


@pytest.mark.slow
def test_power_cut_at_random_instants_never_loses_a_good_slot(
        release: Release, www: Served, tmp_path: Path) -> None:
    """10 SIGKILLs of QEMU during download, slot write, selector flip and first boot of the
    new slot. After each, the next boot must reach a good slot and data must fsck clean."""
    rng = random.Random(int(os.environ.get("OSB_POWER_SEED", "7")))
    node = Node(release, tmp_path, www)
    www.cut_after = None
    rows = []
    vm = node.start()
    node.login(0)
    node.sh("echo kept | sudo tee /var/lib/keep.txt && sync")
    bundles = [release.bundle("1.1.0"), release.bundle("1.0.0")]
    for run_no in range(10):
        phase = PHASES[run_no % len(PHASES)]
        m = node.mark()
        # 1.0.0 is older than 1.1.0: allowed, this test is about power, not versions
        vm.type(f"sudo osbuilder-agent upgrade --allow-downgrade {URL}/{bundles[run_no % 2]}\n")
        if phase == "download":
            vm.wait_for(r"upgrade: downloading", 300, m)
            time.sleep(rng.uniform(0.2, 5.0))
        elif phase == "slot write":
            vm.wait_for(r"upgrade: installing", 600, m)
            time.sleep(rng.uniform(1.0, 20.0))
        elif phase == "selector flip":
            # RAUC calls the chooser last: it copies kernel and initrd, then the entry
            vm.wait_for(r"boot selector: staging slot", 600, m)
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            vm.wait_for(r"upgrade: rebooting", 900, m)
            vm.wait_for(r"osbuilder: slot", BOOT, m)
            time.sleep(rng.uniform(0.0, 30.0))
        cut_at = node.mark()
        vm.kill()
        rc, fsck = ext4_fsck(node.disk, partitions(node.disk)[1][3], tmp_path)
        vm = node.start()
        slot = vm.wait_for(r"osbuilder: slot ([ab])", BOOT).group(1)
        node.login(0)
        out = node.settled(slot)
        good = re.search(rf"slot {slot}:\s+\S+ good", out) is not None and "kept" in out
        rows.append((run_no + 1, phase, cut_at, slot, good, rc))
        assert good, f"run {run_no + 1} ({phase}): booted slot {slot} not good:\n{out}"
        assert rc == 0, f"run {run_no + 1} ({phase}): data partition not clean:\n{fsck}"
    vm.kill()
    print("\npower-cut runs (qemu-amd64, TCG)\nrun  phase          booted  good  fsck")
    for n, phase, _, slot, good, rc in rows:
        print(f"{n:3}  {phase:13}  {slot:6}  {'yes' if good else 'NO':4}  "
              f"{'clean' if rc == 0 else rc}")
    print(f"survived {sum(1 for r in rows if r[4] and r[5] == 0)}/{len(rows)}")
