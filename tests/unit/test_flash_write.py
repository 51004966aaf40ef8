"""flash onto a file-backed target (a regular file stands in for the SD card: --force):
raw and .img.zst images, the read-back check, and config.yaml on the boot partition."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host.flash import flash, writer
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import OsbError
from tests.helpers.image import fat_read, partitions

MIB = 1 << 20


def small_image(tmp_path: Path, table: str = "gpt") -> Path:
    """A 12 MiB disk like osbuilder's: FAT OSB_BOOT, then OSB_ROOT_A of random bytes; GPT,
    or MBR (the Pi family) where only the FAT label says which partition is OSB_BOOT."""
    img = tmp_path / "node.img"
    img.write_bytes(b"")
    os.truncate(img, 12 * MIB)
    if table == "gpt":
        script = ('label: gpt\nstart=2048, size=8192, type=uefi, name="OSB_BOOT"\n'
                  'start=10240, size=12288, type=linux, name="OSB_ROOT_A"\n')
    else:
        script = "label: dos\nstart=2048, size=8192, type=c\nstart=10240, size=12288, type=83\n"
    subprocess.run(["sfdisk", "-q", str(img)], input=script.encode(), check=True)
    fat = tmp_path / "boot.vfat"
    subprocess.run(["mkfs.vfat", "-C", str(fat), "4096", "-n", "OSB_BOOT"], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-i", str(fat), "-", "::/cmdline.txt"], input=b"quiet\n",
                   check=True)
    with img.open("r+b") as f:
        f.seek(MIB)
        f.write(fat.read_bytes())
        f.seek(5 * MIB)
        f.write(os.urandom(6 * MIB))
    return img


def osb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "sdcard.bin"
    t.write_bytes(b"\xff" * (16 * MIB))  # bigger than the image, not blank
    return t


def test_flash_zst_to_file_with_config(tmp_path: Path, target: Path) -> None:
    img = small_image(tmp_path)
    subprocess.run(["zstd", "-q", str(img), "-o", f"{img}.zst"], check=True)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pi-7\nk3os:\n  password: pw\n")
    r = osb("flash", f"{img}.zst", str(target), "--config", str(cfg), "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{target}: flashed and verified\n"
    # progress: bytes, rate and ETA while writing, then the read-back
    assert "writing node.img.zst ->" in r.stderr and "/12.6 MB (" in r.stderr
    assert "MB/s, ETA" in r.stderr and "verifying" in r.stderr
    written = target.read_bytes()
    original = img.read_bytes()
    boot = partitions(target)[1][0]
    # everything but the boot partition (where config.yaml went) is the image's bytes
    assert written[:boot.start] == original[:boot.start]
    assert written[boot.start + boot.size:len(original)] == original[boot.start + boot.size:]
    assert written[len(original):] == b"\xff" * (16 * MIB - len(original))
    assert fat_read(target, boot, "config.yaml") == cfg.read_bytes()
    assert fat_read(target, boot, "cmdline.txt") == b"quiet\n"


def test_flash_raw_without_config_is_byte_identical(tmp_path: Path, target: Path) -> None:
    img = small_image(tmp_path)
    res = flash(img, target, Progress(io.StringIO()), force=True)
    assert res.size == img.stat().st_size and res.config_offset is None
    assert target.read_bytes()[:res.size] == img.read_bytes()


def test_regular_file_target_needs_force(tmp_path: Path, target: Path) -> None:
    r = osb("flash", str(small_image(tmp_path)), str(target))
    assert r.returncode == 2
    assert "is a regular file, not a block device: pass --force" in r.stderr
    assert target.read_bytes() == b"\xff" * (16 * MIB)


def test_bad_config_is_refused_before_writing(tmp_path: Path, target: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("k3os:\n  labels: [red]\n")
    r = osb("flash", str(small_image(tmp_path)), str(target), "--config", str(cfg), "--force")
    assert r.returncode == 2
    assert "k3os.labels" in r.stderr and "expected object" in r.stderr
    assert target.read_bytes() == b"\xff" * (16 * MIB)


def test_corrupted_write_is_caught_by_read_back(tmp_path: Path, target: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A medium that silently stores one wrong byte in the second chunk (injected)."""
    img = small_image(tmp_path)
    real = writer.write_all
    calls = []

    def flaky(fd: int, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        real(fd, data)

    monkeypatch.setattr(writer, "write_all", flaky)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: x\n")
    with pytest.raises(OsbError, match=rf"verification failed: {target} differs from the "
                                       rf"image in bytes 4194304\.\.8388607"):
        flash(img, target, Progress(io.StringIO()), cfg, force=True)
    assert len(calls) == 3
    # no config on a card that failed verification
    boot = partitions(target)[1][0]
    r = subprocess.run(["mdir", "-i", f"{target}@@{boot.start}", "-b", "::/"],
                       capture_output=True, text=True)
    assert "config.yaml" not in r.stdout


def test_image_larger_than_device_is_refused(tmp_path: Path, target: Path) -> None:
    img = small_image(tmp_path)
    with pytest.raises(OsbError, match=r"needs 0\.01 GB, .* has only 0\.00 GB"):
        writer.write_image(img, target, Progress(io.StringIO()), device_size=MIB)


def test_broken_zst_fails_clearly(tmp_path: Path, target: Path) -> None:
    img = small_image(tmp_path)
    zst = Path(f"{img}.zst")
    subprocess.run(["zstd", "-q", str(img), "-o", str(zst)], check=True)
    whole = zst.read_bytes()
    zst.write_bytes(whole[: len(whole) // 2])
    r = osb("flash", str(zst), str(target), "--force")
    assert r.returncode == 2
    assert f"IMAGE {zst}: not a readable zstd file" in r.stderr
    assert target.read_bytes() == b"\xff" * (16 * MIB)
    # frame headers intact, data corrupt: found while decompressing (checksum)
    mid = len(whole) // 2
    zst.write_bytes(whole[:mid] + bytes(b ^ 0x55 for b in whole[mid:mid + 64])
                    + whole[mid + 64:])
    r = osb("flash", str(zst), str(target), "--force")
    assert r.returncode == 2
    assert "command failed" in r.stderr and "zstd -dc" in r.stderr, r.stderr


def test_config_onto_an_mbr_card(tmp_path: Path, target: Path) -> None:
    img = small_image(tmp_path, "dos")
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pi-2\n")
    res = flash(img, target, Progress(io.StringIO()), cfg, force=True)
    assert res.config_offset == MIB
    boot = partitions(target)[1][0]
    assert fat_read(target, boot, "config.yaml") == b"hostname: pi-2\n"
