"""The diskimage-builder side of `make bench`: build DIB's own bootable image
(`disk-image-create debian-minimal vm`) of the same package set as an osbuilder board,
and boot it under QEMU TCG.

DIB's `vm` element partitions a loop device and maps the partitions with kpartx, i.e.
device-mapper. Where device-mapper is missing (this kind of host), the bench puts the
shims in bench/dib-shims first in PATH for the DIB run only: kpartx and dmsetup map each
partition with an offset loop device, and a pass-through sudo keeps that PATH (real sudo
resets PATH to its secure_path). DIB itself runs unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from osbuilder.host.boards import Board
from osbuilder.host.qemu import VM, scratch_disk
from osbuilder.host.stages.rootfs_dib import OSB_ELEMENTS, find_dib

SHIMS = Path(__file__).resolve().parent / "dib-shims"
# Same kernel as the osbuilder board (debian-minimal always adds linux-image-<arch>).
ONE_KERNEL = "osbuilder-one-kernel"
# Runs argv and writes the peak RSS (KiB) of the largest process of its tree to argv[1].
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:]).returncode\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mib: float


def measured(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None,
             stdout_to_log: bool = True) -> Measured:
    """Wall seconds and peak RSS (largest single process in the tree) of argv."""
    rss = log.with_suffix(".rss")
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(rss), *argv], env=env,
                              cwd=cwd, stdout=out if stdout_to_log else subprocess.DEVNULL,
                              stderr=out)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}); log {log}:\n"
                         + "\n".join(tail))
    return Measured(round(seconds, 1), round(int(rss.read_text()) / 1024, 1))


def device_mapper_works() -> bool:
    if shutil.which("kpartx") is None or shutil.which("dmsetup") is None:
        return False
    return subprocess.run(["dmsetup", "version"], capture_output=True).returncode == 0


def dib_env(board: Board, cache: Path, use_shims: bool) -> dict[str, str]:
    tool = find_dib()
    path = f"{tool.parent}:{os.environ['PATH']}"
    if use_shims:
        path = f"{SHIMS}:{path}"
    cmdline = " ".join(board.kernel.cmdline)
    return dict(
        os.environ, PATH=path,
        DIB_RELEASE=board.suite, DIB_DISTRIBUTION_MIRROR=board.mirror,
        # the same sources as osbuilder's mmdebstrap: the suite alone, same mirror
        DIB_APT_SOURCES_CONF=f"default:deb {board.mirror} {board.suite} "
                             + " ".join(board.components),
        DIB_OSBUILDER_KERNEL_PACKAGE=board.kernel.package,
        ELEMENTS_PATH=str(OSB_ELEMENTS),
        DIB_IMAGE_CACHE=str(cache),
        # DIB's own cache of its bootstrap, so that its warm build is its best
        DIB_DEBOOTSTRAP_CACHE="1", DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE="1",
        # what osbuilder's images boot with: the board's cmdline, no boot menu wait
        DIB_BOOTLOADER_DEFAULT_CMDLINE=cmdline, DIB_GRUB_TIMEOUT="0",
    )


def dib_build(board: Board, out: Path, cache: Path, use_shims: bool) -> Measured:
    """`disk-image-create -t raw debian-minimal vm` with the board's packages -> out.raw"""
    argv = [str(find_dib()), "-a", board.arch, "-t", "raw", "-o", str(out),
            "-p", ",".join(board.all_packages()), "debian-minimal", "vm", ONE_KERNEL]
    return measured(argv, dib_env(board, cache, use_shims), out.with_suffix(".log"),
                    cwd=out.parent)


def zstd(image: Path) -> Path:
    """Compressed as osbuilder's --compress does (zstd -3), for a like-for-like size."""
    out = image.with_name(image.name + ".zst")
    subprocess.run(["zstd", "-q", "-3", "-T0", "--sparse", "-f", "-o", str(out), str(image)],
                   check=True)
    return out


def dib_boot_to_login(board: Board, image: Path, work: Path) -> float:
    """Seconds from QEMU start to the login prompt; DIB's vm image boots GRUB from the
    MBR, so SeaBIOS, with the board's machine, CPU, memory and vCPUs."""
    q = board.qemu
    assert q is not None
    disk = scratch_disk(image, work / "dib-boot.raw", "4G")
    log = work / "dib-console.log"
    argv = [q.binary, "-accel", "tcg", "-machine", q.machine, "-cpu", q.cpu,
            "-m", str(q.memory_mib), "-smp", str(q.smp),
            "-drive", f"if=virtio,format=raw,file={disk}",
            "-nic", "user,model=virtio-net-pci,restrict=on",
            "-display", "none", "-serial", f"file:{log}", "-monitor", "none"]
    with VM(argv, log) as vm:
        vm.wait_for(r"^\S+ login:", 900)
        return round(vm.elapsed(), 1)
