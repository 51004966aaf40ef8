"""The rootfs stage's temporary tarballs (stages/rootfs.py): each build writes
`<tarball>.<pid>.part`, so builds sharing a cache never write into one file; the parts of
builds that were killed before their cleanup ran are found and removed by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from osbuilder.host.stages.rootfs import stale_parts


def test_parts_of_gone_builds_are_stale_running_ones_are_not(tmp_path: Path) -> None:
    tarball = tmp_path / "rpi-arm64-0123456789abcdef0123.tar"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"{tarball.name}.{int(gone.stdout)}.part"
    alive = tmp_path / f"{tarball.name}.{os.getpid()}.part"
    other_board = tmp_path / f"rpi5-0123456789abcdef0123.tar.{int(gone.stdout)}.part"
    not_a_pid = tmp_path / f"{tarball.name}.x1.part"
    for f in (dead, alive, other_board, not_a_pid):
        f.write_bytes(b"half a tarball")
    assert stale_parts(tarball) == [dead]
