"""flash: which devices are refused. Block devices are described by sysfs fixtures (a
folder laid out like /sys) and mountinfo/swaps text, as the kernel would show them; one
test asks the real kernel about the disk this host runs from."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host.flash.target_checks import check_target, describe, refusals
from osbuilder.shared.errors import ExitCode, OsbError
from tests.helpers.small_image import small_image

USB = "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block"
SATA = "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block"
MMC = "devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block"


def fake_sys(tmp_path: Path, where: str, disk: str, major: int, removable: str = "0",
             parts: int = 2, sd: bool = False) -> Path:
    """/sys with one disk (major:0) and its partitions (major:1..): dev, size, removable,
    holders, and the /sys/dev/block links the kernel makes."""
    sys_root = tmp_path / "sys"
    d = sys_root / where / disk
    (d / "holders").mkdir(parents=True)
    (d / "dev").write_text(f"{major}:0\n")
    (d / "size").write_text("62521344\n")  # a 32 GB card, in 512-byte sectors
    (d / "removable").write_text(removable + "\n")
    if sd:
        (d / "device").mkdir()
        (d / "device/type").write_text("SD\n")
    links = sys_root / "dev/block"
    links.mkdir(parents=True, exist_ok=True)
    (links / f"{major}:0").symlink_to(os.path.relpath(d, links))
    for i in range(1, parts + 1):
        name = f"{disk}p{i}" if disk[-1].isdigit() else f"{disk}{i}"
        p = d / name
        (p / "holders").mkdir(parents=True)
        (p / "partition").write_text(f"{i}\n")
        (p / "dev").write_text(f"{major}:{i}\n")
        (p / "size").write_text("1000\n")
        (links / f"{major}:{i}").symlink_to(os.path.relpath(p, links))
    return sys_root


def fake_proc(tmp_path: Path, mounts: tuple[tuple[str, str, str], ...] = (),
              swaps: tuple[str, ...] = ()) -> Path:
    """/proc/self/mountinfo with (major:minor, mount point, source) rows, /proc/swaps."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    rows = [f"{20 + i} 1 {mm} / {point} rw,relatime shared:1 - ext4 {src} rw"
            for i, (mm, point, src) in enumerate(mounts)]
    (proc / "self/mountinfo").write_text("\n".join(rows) + "\n")
    (proc / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n"
                                + "".join(f"{s}\tpartition\t100\t0\t-2\n" for s in swaps))
    return proc


def test_usb_stick_not_mounted_is_accepted(tmp_path: Path) -> None:
    dev = describe("8:0", fake_sys(tmp_path, USB, "sdb", 8), fake_proc(tmp_path))
    assert (dev.name, dev.disk, dev.is_partition) == ("sdb", "sdb", False)
    assert dev.removable and dev.size_bytes == 62521344 * 512
    assert refusals(dev, force=False) == []


def test_sd_card_in_mmc_slot_counts_as_removable(tmp_path: Path) -> None:
    dev = describe("179:0", fake_sys(tmp_path, MMC, "mmcblk0", 179, sd=True),
                   fake_proc(tmp_path))
    assert dev.removable and refusals(dev, force=False) == []


def test_partition_is_refused_unless_forced(tmp_path: Path) -> None:
    dev = describe("8:1", fake_sys(tmp_path, USB, "sdb", 8), fake_proc(tmp_path))
    assert (dev.name, dev.disk, dev.is_partition) == ("sdb1", "sdb", True)
    assert refusals(dev, force=False) == [
        "sdb1 is a partition of sdb: give the whole disk (/dev/sdb), or --force"]
    assert refusals(dev, force=True) == []


def test_internal_disk_is_refused_unless_forced(tmp_path: Path) -> None:
    dev = describe("8:0", fake_sys(tmp_path, SATA, "sda", 8), fake_proc(tmp_path))
    assert not dev.removable
    [why] = refusals(dev, force=False)
    assert why.startswith("sda is not a removable disk") and "--force" in why
    assert refusals(dev, force=True) == []


def test_mounted_partition_refuses_the_disk_even_forced(tmp_path: Path) -> None:
    sys_root = fake_sys(tmp_path, USB, "sdb", 8, removable="1")
    proc = fake_proc(tmp_path, (("8:2", "/media/me/DATA", "/dev/sdb2"),))
    dev = describe("8:0", sys_root, proc)
    assert dev.mounts == ("/media/me/DATA",)
    for force in (False, True):
        [why] = refusals(dev, force)
        assert "sdb is in use: mounted at /media/me/DATA" in why
        assert "--force does not override this" in why


def test_system_disk_named_as_such(tmp_path: Path) -> None:
    # btrfs shows an anonymous major:minor: the source path must still give it away
    sys_root = fake_sys(tmp_path, SATA, "sda", 8)
    dev = describe("8:0", sys_root, fake_proc(tmp_path, (("0:31", "/", "/dev/sda2"),)))
    assert "mounted at / (the running system)" in refusals(dev, force=True)[0]


def test_swap_and_holders_refuse(tmp_path: Path) -> None:
    sys_root = fake_sys(tmp_path, USB, "sdb", 8)
    (sys_root / USB / "sdb/sdb1/holders/dm-0").mkdir()
    dev = describe("8:0", sys_root, fake_proc(tmp_path, swaps=("/dev/sdb2",)))
    assert dev.swaps == ("/dev/sdb2",) and dev.holders == ("dm-0",)
    why = refusals(dev, force=True)
    assert len(why) == 2 and "swap" in why[0] and "held by dm-0" in why[1]


def test_device_node_is_resolved_through_sysfs(tmp_path: Path) -> None:
    """A real block-device node (never opened) pointing at a fixture partition."""
    if os.geteuid() != 0:
        pytest.skip("mknod of a block device node needs root: missing capability")
    node = tmp_path / "sdb1"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(8, 1))
    sys_root = fake_sys(tmp_path, USB, "sdb", 8)
    with pytest.raises(OsbError, match=rf"refusing to write {node}:\n  sdb1 is a partition"):
        check_target(node, False, sys_root, fake_proc(tmp_path))


def test_regular_file_needs_force_and_char_device_never(tmp_path: Path) -> None:
    f = tmp_path / "disk.img"
    f.write_bytes(b"\0" * 512)
    with pytest.raises(OsbError, match="is a regular file, not a block device: pass --force"):
        check_target(f, False)
    assert check_target(f, True) is None
    with pytest.raises(OsbError, match="/dev/null is not a block device"):
        check_target(Path("/dev/null"), True)
    # --force makes a new file target, but never under /dev (a mistyped /dev/sdz)
    assert check_target(tmp_path / "new.img", True) is None
    with pytest.raises(OsbError, match="no such device"):
        check_target(tmp_path / "sdz", False)
    with pytest.raises(OsbError, match="no such device"):
        check_target(Path("/dev/sdz-osb-test"), True)


def root_device() -> Path:
    st = os.stat("/")
    link = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if os.major(st.st_dev) == 0 or not link.exists():
        pytest.skip("/ is not on a block device here (overlay or tmpfs root): no system "
                    "disk to try")
    node = Path("/dev") / link.resolve().name
    if not node.is_block_device():
        pytest.skip(f"{node} missing: this host has no device node for its root disk")
    return node


def test_the_hosts_own_system_disk_is_refused(tmp_path: Path) -> None:
    """The real kernel's view: `osbuilder flash` at the disk / lives on, even forced."""
    node = root_device()
    image = small_image(tmp_path / "x.img").path
    r = subprocess.run([sys.executable, "-m", "osbuilder", "flash", str(image), str(node),
                        "--force", "--yes"], capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr
    assert f"refusing to write {node}" in r.stderr
    assert "(the running system)" in r.stderr
