"""The stock Debian reference that osbuilder's boot is measured against (`make bench` and
the boot-ratio guard of `make test`): plain Debian of the board's suite and arch,
mmdebstrap minbase + systemd + the board's own kernel package, booted the way the board
boots, by the same QEMU command line (osbuilder.host.qemu.qemu_argv).

- UEFI boards: a GPT disk with an ESP holding systemd-boot (from systemd-boot-efi) and
  one Boot Loader Specification entry, and an ext4 root, read-write, mounted by
  PARTUUID.
- U-Boot boards: an MBR disk whose first (FAT) partition holds extlinux/extlinux.conf,
  the kernel and the initrd (what Debian's u-boot-menu writes), and an ext4 root. U-Boot's
  standard boot finds the extlinux file, as it finds osbuilder's boot.scr.

Debian's defaults stay: initramfs-tools with MODULES=most, every unit Debian enables, no
network configuration. With `services`, the second reference of `make bench`: the same plus
the services osbuilder's image starts before its login prompt and minbase has not
(SERVICES: D-Bus, sshd, systemd-resolved and systemd-timesyncd, each enabled by its
package, and systemd-networkd with DHCP on the wired links), so that a boot's time is
split between those services and what osbuilder adds itself. The host keys that
openssh-server's package made at build time are removed: as on osbuilder's nodes, each
machine makes its own at its first boot (Debian's sshd-keygen.service, before sshd;
the image's machine-id says `uninitialized`, so its first boot is one).

The disk is made loop-free like osbuilder's (mkfs.ext4 -d, mkfs.vfat + mcopy, sfdisk, dd at
offsets). The rootfs tarball is cached by its mmdebstrap command line; the console login
is root / ROOT_PASSWORD, the host name `stock`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from osbuilder.bootloaders import bootloader
from osbuilder.host.binfmt import ensure_binfmt
from osbuilder.host.boards import Board
from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run

HOSTNAME = "stock"
ROOT_PASSWORD = "bench"
ESP_MIB = 256
ROOT_MIB = 2048
# fixed ids: the kernel command line names the root by PARTUUID
GPT_ROOT_UUID = "7e0c5a3e-57c0-4b1c-9a5d-0000000000a1"
MBR_DISK_ID = "0x73746b31"  # "stk1"
CUSTOMIZE = [
    f'echo {HOSTNAME} > "$1/etc/hostname"',
    f'printf "127.0.0.1 localhost\\n127.0.1.1 {HOSTNAME}\\n" > "$1/etc/hosts"',
    f'echo root:{ROOT_PASSWORD} | chroot "$1" chpasswd',
]
SERVICES = ["dbus", "openssh-server", "systemd-resolved", "systemd-timesyncd"]
SERVICES_CUSTOMIZE = [
    'mkdir -p "$1/etc/systemd/network"',
    'printf "[Match]\\nName=en* eth*\\n\\n[Network]\\nDHCP=yes\\n"'
    ' > "$1/etc/systemd/network/20-wired.network"',
    'systemctl --root="$1" enable systemd-networkd.service',
    'rm -f "$1"/etc/ssh/ssh_host_*',
]


def uefi(board: Board) -> bool:
    """Boots like a UEFI board (systemd-boot on GPT), else like a U-Boot one."""
    return bootloader(board.bootloader).uefi


def packages(board: Board, services: bool = False) -> list[str]:
    base = ["systemd-sysv", "udev", "login", board.kernel.package]
    return (base + (["systemd-boot-efi"] if uefi(board) else [])
            + (SERVICES if services else []))


def mmdebstrap_argv(board: Board, root_spec: str, out: Path,
                    services: bool = False) -> list[str]:
    fstab = f'echo "{root_spec} / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"'
    hooks = [*CUSTOMIZE, fstab, *(SERVICES_CUSTOMIZE if services else [])]
    return ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
            f"--architectures={board.arch}", "--components=main",
            f"--include={','.join(packages(board, services))}",
            *[f"--customize-hook={h}" for h in hooks],
            board.suite, str(out), board.mirror]


def root_spec(board: Board) -> str:
    if uefi(board):
        return f"PARTUUID={GPT_ROOT_UUID}"
    return f"PARTUUID={MBR_DISK_ID[2:]}-02"


def rootfs_tarball(board: Board, cache: Path, env: dict[str, str],
                   services: bool = False) -> Path:
    """mmdebstrap's tarball of the stock root, cached by its command line."""
    cache.mkdir(parents=True, exist_ok=True)
    spec = root_spec(board)
    argv = mmdebstrap_argv(board, spec, Path("OUT"), services)
    key = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
    tarball = cache / f"stock-{board.arch}-{key}.tar"
    if not tarball.is_file():
        ensure_binfmt(board.arch)
        part = tarball.with_name(tarball.name + ".part")
        try:
            run(mmdebstrap_argv(board, spec, part, services), env=env)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, tarball)
    return tarball


def kernel_args(board: Board, console: str | None) -> str:
    consoles = [console] if console else list(board.kernel.console)
    return " ".join([f"root={root_spec(board)}", "rw",
                     *(f"console={c}" for c in consoles), *board.kernel.cmdline])


def boot_files(board: Board, root: Path, esp: Path, args: str) -> None:
    kernel = sorted((root / "boot").glob("vmlinuz-*"))
    initrd = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernel) != 1 or len(initrd) != 1:
        raise OsbError(f"stock root: expected one kernel and one initrd, found {kernel} "
                       f"{initrd}")
    shutil.copyfile(kernel[0], esp / "vmlinuz")
    shutil.copyfile(initrd[0], esp / "initrd.img")
    efi = board.arch_facts.uefi
    if efi and uefi(board):
        (esp / "EFI/BOOT").mkdir(parents=True)
        shutil.copyfile(root / f"usr/lib/systemd/boot/efi/systemd-boot{efi}.efi",
                        esp / f"EFI/BOOT/BOOT{efi.upper()}.EFI")
        (esp / "loader/entries").mkdir(parents=True)
        (esp / "loader/loader.conf").write_text("default debian.conf\ntimeout 0\n")
        (esp / "loader/entries/debian.conf").write_text(
            f"title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions {args}\n")
    else:
        (esp / "extlinux").mkdir()
        (esp / "extlinux/extlinux.conf").write_text(
            "default debian\ntimeout 0\nlabel debian\n  kernel /vmlinuz\n"
            f"  initrd /initrd.img\n  append {args}\n")


def build_stock_image(board: Board, cache: Path, out: Path,
                      console: str | None = None, services: bool = False) -> Path:
    """The stock disk image of board's suite, arch and kernel at out; console: the one
    console= to use instead of the board's (e.g. ttyAMA0 on QEMU's virt machine);
    services: with the node's services (SERVICES)."""
    env = {"SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "1700000000"),
           "LC_ALL": "C.UTF-8"}
    tarball = rootfs_tarball(board, cache, env, services)
    with tempfile.TemporaryDirectory(prefix="osb-stock-", dir=out.parent) as tmp:
        work = Path(tmp)
        root, esp = work / "root", work / "esp"
        root.mkdir()
        esp.mkdir()
        run(["tar", "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*",
             "-xpf", tarball])
        if services:  # a first boot (machine-id(5)), for sshd-keygen's ConditionFirstBoot
            (root / "etc/machine-id").write_text("uninitialized\n")  # mmdebstrap empties it
        boot_files(board, root, esp, kernel_args(board, console))
        fat, ext4 = work / "esp.vfat", work / "root.ext4"
        run(["mkfs.vfat", "-C", fat, str(ESP_MIB * 1024), "-F", "32", "-n", "BOOT"])
        run(["mcopy", "-i", fat, "-s", "-p", "-m", "-Q", *sorted(esp.iterdir()), "::/"])
        run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", "root_owner=0:0",
             "-d", root, ext4, f"{ROOT_MIB}M"])
        total = (1 + ESP_MIB + ROOT_MIB + 1) << 20
        with out.open("wb") as f:
            f.truncate(total)
        if uefi(board):
            table = ("label: gpt\n"
                     f"start=1MiB, size={ESP_MIB}MiB, type=U\n"
                     f"size={ROOT_MIB}MiB, type=L, uuid={GPT_ROOT_UUID}\n")
        else:
            table = (f"label: dos\nlabel-id: {MBR_DISK_ID}\n"
                     f"start=1MiB, size={ESP_MIB}MiB, type=c, bootable\n"
                     f"size={ROOT_MIB}MiB, type=83\n")
        run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", out],
            input=table.encode())
        for img, start in ((fat, 1), (ext4, 1 + ESP_MIB)):
            run(["dd", f"if={img}", f"of={out}", "bs=1M", f"seek={start}",
                 "conv=notrunc,sparse", "status=none"])
    return out
