"""Is DEVICE safe to overwrite? Facts about a block device from sysfs and the mount table,
and the refusals they lead to (pure: the sysfs and /proc roots are parameters, so tests
describe a USB stick, a partition or the system disk as a folder of small files).

Never overwritten, not even with --force: a disk with anything mounted (the running
system included), used as swap, or held by another driver (LVM, RAID, dm-crypt). With
--force: a partition, a disk that is not removable, a regular file (made when it does not
exist, except under /dev: a mistyped device name must not fill the RAM-backed /dev).
Removable means what lsblk calls RM or HOTPLUG: the `removable` flag, a disk behind a USB
bridge (USB SSDs often say removable=0), or an SD card in an MMC slot.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from osbuilder.shared.errors import OsbError

SYS = Path("/sys")
PROC = Path("/proc")


@dataclass(frozen=True)
class BlockDevice:
    name: str  # kernel name of what DEVICE is: sdb, sdb1, mmcblk0
    disk: str  # the whole disk it belongs to
    is_partition: bool
    removable: bool
    size_bytes: int
    mounts: tuple[str, ...]  # mount points of the disk or any of its partitions
    swaps: tuple[str, ...]
    holders: tuple[str, ...]
    model: str = ""  # vendor and model as the disk reports them, for the prompt

    def describe(self) -> str:
        n = self.size_bytes
        size = f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
        return f"{self.model or 'unknown model'}, {size}"


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _members(disk_dir: Path) -> dict[str, str]:
    """{name: "major:minor"} of the disk and its partitions."""
    out = {disk_dir.name: _read(disk_dir / "dev")}
    for child in sorted(disk_dir.iterdir()):
        if (child / "partition").is_file():
            out[child.name] = _read(child / "dev")
    return out


def _mounts(mountinfo: str, devs: set[str], names: set[str]) -> tuple[str, ...]:
    """Mount points whose source is one of devs (major:minor) or names (/dev/<name>):
    btrfs reports an anonymous major:minor, so the source path counts too."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields:
            continue
        source = fields[fields.index("-") + 2]
        if fields[2] in devs or (source.startswith("/dev/")
                                 and os.path.basename(source) in names):
            points.append(fields[4].replace("\\040", " "))
    return tuple(points)


def describe(major_minor: str, sys_root: Path = SYS, proc_root: Path = PROC) -> BlockDevice:
    link = sys_root / "dev/block" / major_minor
    if not link.exists():
        raise OsbError(f"no block device {major_minor} in {sys_root}/dev/block")
    node = link.resolve()
    is_partition = (node / "partition").is_file()
    disk_dir = node.parent if is_partition else node
    members = _members(disk_dir)
    removable = (_read(disk_dir / "removable") == "1"
                 or "/usb" in str(disk_dir.relative_to(sys_root.resolve()))
                 or _read(disk_dir / "device/type") == "SD")
    dirs = [disk_dir, *(disk_dir / n for n in members if n != disk_dir.name)]
    holders = tuple(sorted(h.name for d in dirs for h in (d / "holders").glob("*")))
    swaps = tuple(line.split()[0] for line in _read(proc_root / "swaps").splitlines()[1:]
                  if line.split() and os.path.basename(line.split()[0]) in members)
    return BlockDevice(
        name=node.name, disk=disk_dir.name, is_partition=is_partition, removable=removable,
        size_bytes=int(_read(node / "size", "0")) * 512,
        mounts=_mounts(_read(proc_root / "self/mountinfo"), set(members.values()),
                       set(members)),
        swaps=swaps, holders=holders, model=model_of(disk_dir),
    )


def model_of(disk_dir: Path) -> str:
    """SCSI/USB disks say vendor and model, MMC cards their name."""
    dev = disk_dir / "device"
    words = [_read(dev / "vendor"), _read(dev / "model")] if (dev / "model").exists() else [
        _read(dev / "name")]
    return " ".join(w for w in words if w)[:60]


def refusals(dev: BlockDevice, force: bool) -> list[str]:
    """Why DEVICE must not be written; empty when it may be."""
    why = []
    if dev.mounts:
        system = " (the running system)" if "/" in dev.mounts else ""
        why.append(f"{dev.disk} is in use: mounted at {', '.join(dev.mounts)}{system}; "
                   "unmount it first (--force does not override this)")
    if dev.swaps:
        why.append(f"{dev.disk} is in use as swap ({', '.join(dev.swaps)}); swapoff first")
    if dev.holders:
        why.append(f"{dev.disk} is held by {', '.join(dev.holders)} (LVM, RAID or dm-crypt); "
                   "release it first")
    if force:
        return why
    if dev.is_partition:
        why.append(f"{dev.name} is a partition of {dev.disk}: give the whole disk "
                   f"(/dev/{dev.disk}), or --force")
    if not dev.removable:
        why.append(f"{dev.disk} is not a removable disk (not USB, SD or marked removable): "
                   "if you are sure, --force")
    return why


def check_target(path: Path, force: bool, sys_root: Path = SYS, proc_root: Path = PROC
                 ) -> BlockDevice | None:
    """The block device DEVICE is (None for a regular file, allowed with --force: images
    for VMs, and the tests); raises OsbError with every reason it must not be written."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if force and not path.resolve().is_relative_to("/dev"):
            return None  # a new file target
        raise OsbError(f"DEVICE {path}: no such device (see lsblk; --force writes a new "
                       "file outside /dev)") from None
    except OSError as exc:
        raise OsbError(f"DEVICE {path}: {exc.strerror}") from exc
    if stat.S_ISREG(st.st_mode):
        if not force:
            raise OsbError(f"DEVICE {path} is a regular file, not a block device: pass --force "
                           "to write the image into it (e.g. a VM disk)")
        return None
    if not stat.S_ISBLK(st.st_mode):
        raise OsbError(f"DEVICE {path} is not a block device (expected a disk like /dev/sdb "
                       "or /dev/mmcblk0)")
    dev = describe(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", sys_root, proc_root)
    why = refusals(dev, force)
    if why:
        raise OsbError(f"refusing to write {path}:\n  " + "\n  ".join(why))
    return dev
