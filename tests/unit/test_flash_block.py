"""flash onto a real block device: a loop device over a file (root and a free loop device
needed; skipped with the reason otherwise). Once as the kernel describes it (not
removable: --force, then the erase prompt), once described by a sysfs fixture as a USB
stick (tests/unit/test_flash_target.py), where the prompt names its model and size."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.host.flash import flash
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import Cancelled, ExitCode
from tests.helpers.small_image import SmallImage, small_image
from tests.unit.test_flash_target import USB, fake_proc, fake_sys

MIB = 1 << 20
USED = b"\x5a"


@pytest.fixture
def image(tmp_path: Path) -> SmallImage:
    return small_image(tmp_path / "node.img")


@pytest.fixture
def loop(tmp_path: Path, image: SmallImage) -> Iterator[tuple[Path, Path]]:
    """(/dev/loopN, its backing file), the file filled like a used card."""
    if os.geteuid() != 0:
        pytest.skip("attaching a loop device needs root: missing capability")
    backing = tmp_path / "card.bin"
    backing.write_bytes(USED * (image.size + 2 * MIB))
    r = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device to flash onto (losetup: {r.stderr.strip()}): missing "
                    "capability")
    dev = Path(r.stdout.strip())
    try:
        yield dev, backing
    finally:
        subprocess.run(["losetup", "--detach", str(dev)], check=True)


def osb(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", "flash", *args],
                          capture_output=True, text=True, timeout=120, input=stdin)


def check_flashed(backing: Path, image: SmallImage) -> None:
    got, want = backing.read_bytes(), image.path.read_bytes()
    assert got[:image.slot_a_data_end] == want[:image.slot_a_data_end]
    assert got[image.data.start:image.size] == want[image.data.start:image.size]
    assert set(got[image.slot_b.start:image.slot_b.end]) == set(USED)  # left as it was


def test_erase_prompt_on_a_real_block_device(loop: tuple[Path, Path],
                                             image: SmallImage) -> None:
    dev, backing = loop
    before = backing.read_bytes()
    r = osb(str(image.path), str(dev), stdin="y\n")  # a loop device is not removable
    assert r.returncode == ExitCode.BAD_INPUT and "is not a removable disk" in r.stderr
    r = osb(str(image.path), str(dev), "--force", stdin="n\n")
    size = f"{(image.size + 2 * MIB) / 1e6:.1f} MB"
    assert f"erase {dev} (unknown model, {size})? [y/N]" in r.stderr
    assert r.returncode == ExitCode.CANCELLED and f"{dev}: left as it was" in r.stderr
    r = osb(str(image.path), str(dev), "--force", stdin="")  # no answer is a no
    assert r.returncode == ExitCode.CANCELLED
    assert backing.read_bytes() == before
    r = osb(str(image.path), str(dev), "--force", stdin="y\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{dev}: flashed and verified\n"
    check_flashed(backing, image)


def test_usb_stick_from_sysfs_fixture_is_asked_for_by_model(
        loop: tuple[Path, Path], image: SmallImage, tmp_path: Path) -> None:
    dev, backing = loop
    st = os.stat(dev)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    sys_root = fake_sys(tmp_path, USB, "sdb", major, removable="1", parts=0)
    disk = sys_root / USB / "sdb"
    (disk / "size").write_text(f"{os.path.getsize(backing) // 512}\n")
    (disk / "device").mkdir()
    (disk / "device/vendor").write_text("SanDisk \n")
    (disk / "device/model").write_text("Ultra Fit\n")
    link = sys_root / "dev/block" / f"{major}:{minor}"
    if not link.exists():
        link.symlink_to(os.path.relpath(disk, link.parent))
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    proc = fake_proc(tmp_path)
    with pytest.raises(Cancelled):
        flash(image.path, dev, Progress(io.StringIO()), confirm=no, sys_root=sys_root,
              proc_root=proc)
    size = (image.size + 2 * MIB) / 1e6
    assert asked == [f"erase {dev} (SanDisk Ultra Fit, {size:.1f} MB)?"]
    res = flash(image.path, dev, Progress(io.StringIO()), yes=True, confirm=no,
                sys_root=sys_root, proc_root=proc)
    assert len(asked) == 1  # --yes: not asked again
    assert res.data_bytes == image.data_bytes
    check_flashed(backing, image)
