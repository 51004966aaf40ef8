"""QEMU VMs for the live-system e2e tests (ISO, PXE, their installs): the ISO as a
virtio-scsi CD-ROM, a VM with a typed serial console and its own UEFI variables copy, and
`osbuilder serve-pxe` on the host's 127.0.0.1 (the guest reaches it through guestfwd)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv
from tests.helpers.image import Part, partitions, probe

GUEST_URL = "http://10.0.2.100:8080"  # serve-pxe as the guest sees it (guestfwd)


def cdrom(iso: Path, bootindex: int = 0) -> tuple[str, ...]:
    """The ISO as a SCSI CD, first to boot unless told (QEMU's -kernel takes bootindex 0)."""
    return ("-device", "virtio-scsi-pci,id=scsi0",
            "-drive", f"if=none,id=cd0,media=cdrom,readonly=on,format=raw,file={iso}",
            "-device", f"scsi-cd,drive=cd0,bootindex={bootindex}")


def vm(disk: Path, tmp_path: Path, log: str, extra: tuple[str, ...] = (), *,
       guest_forwards: tuple[str, ...] = (), nic_options: tuple[str, ...] = (),
       network: bool = True) -> VM:
    """A qemu-amd64 VM on disk with a typed console logged to tmp_path/<log>.log; every VM
    of one test shares tmp_path/vars.fd (the UEFI boot entries an install adds);
    network=False: no network card."""
    serial, chardev = interactive_serial(tmp_path / f"{log}.sock")
    argv = qemu_argv(load_board("qemu-amd64"), disk, tmp_path / "vars.fd", serial=serial,
                     extra=(*chardev, *extra), guest_forwards=guest_forwards,
                     nic_options=nic_options, network=network)
    return VM(argv, tmp_path / f"{log}.log", tmp_path / f"{log}.sock")


def pxe_tftp(tmp_path: Path) -> tuple[str, ...]:
    """nic_options for a PXE boot: QEMU's TFTP serves an iPXE script chaining to serve-pxe."""
    tftp = tmp_path / "tftp"
    tftp.mkdir(exist_ok=True)
    (tftp / "chain.ipxe").write_text(f"#!ipxe\nchain {GUEST_URL}/boot.ipxe\n")
    return (f"tftp={tftp}", "bootfile=chain.ipxe")


@contextmanager
def serve_pxe(folder: Path, config: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`osbuilder serve-pxe folder --config config` on 127.0.0.1 (a free port), announcing
    GUEST_URL to the nodes; yields (port, process)."""
    proc = subprocess.Popen([sys.executable, "-m", "osbuilder", "serve-pxe", str(folder),
                             "--bind", "127.0.0.1", "--port", "0", "--url", GUEST_URL,
                             "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        m = re.search(r"on 127\.0\.0\.1:(\d+);", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.stderr else "serve-pxe did not start"
        yield int(m.group(1)), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def installed_partitions(disk: Path) -> list[Part]:
    """The disk an install wrote, checked for the A/B layout of a disk image (GPT, the four
    labels, slot A's squashfs, the boot and data file systems); its partitions."""
    label, parts = partitions(disk)
    assert label == "gpt"
    assert [p.name for p in parts] == ["OSB_BOOT", "OSB_ROOT_A", "OSB_ROOT_B", "OSB_DATA"]
    assert probe(disk, parts[0])["LABEL"] == "OSB_BOOT"
    assert probe(disk, parts[1])["TYPE"] == "squashfs"
    assert probe(disk, parts[3])["LABEL"] == "OSB_DATA"
    return parts
