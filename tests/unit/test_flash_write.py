"""flash onto a file-backed target (a regular file stands in for the SD card: --force):
only what the image holds is written, holes read as zeros where the image needs it, the
image is checked before the target is touched, the read-back catches a bad write, and
config.yaml lands on the boot partition."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host.flash import flash, writer
from osbuilder.host.flash.extents import Piece, raw_pieces, split_zeros
from osbuilder.host.flash.image_table import read_table
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import ExitCode, OsbError
from tests.helpers.image import fat_read, partitions
from tests.helpers.small_image import SmallImage, small_image

MIB = 1 << 20
USED = b"\xa5"  # what a used SD card holds where nothing is written


def osb(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", *args], capture_output=True,
                          text=True, timeout=120, input=stdin)


@pytest.fixture
def image(tmp_path: Path) -> SmallImage:
    return small_image(tmp_path / "node.img")


@pytest.fixture
def target(tmp_path: Path, image: SmallImage) -> Path:
    t = tmp_path / "sdcard.bin"
    t.write_bytes(USED * (image.size + 4 * MIB))  # bigger than the image, and used
    return t


def test_only_data_is_written_and_holes_read_as_zeros_where_needed(
        image: SmallImage, target: Path) -> None:
    res = flash(image.path, target, Progress(io.StringIO()), force=True)
    got, want = target.read_bytes(), image.path.read_bytes()
    # written or zeroed: everything but the slots' space after their last data
    for start, end in ((0, image.slot_a.start), (image.slot_a.start, image.slot_a_data_end),
                       (image.data.start, image.size)):
        assert got[start:end] == want[start:end]
    assert got[image.boot.start:image.boot.end].count(0) > 3 * MIB  # the FAT's holes
    # left as the card had it: slot A after its data, all of the empty slot B, past the end
    assert set(got[image.slot_a_data_end:image.slot_b.end]) == set(USED)
    assert set(got[image.size:]) == set(USED)
    assert res.data_bytes == image.data_bytes
    assert res.data_bytes + res.zeroed_bytes == image.size - (
        image.slot_b.end - image.slot_a_data_end)


def test_sparse_reading_and_zero_blocks_in_data(image: SmallImage) -> None:
    fd = os.open(image.path, os.O_RDONLY)
    try:
        pieces = list(raw_pieces(fd, image.size))
    finally:
        os.close(fd)
    assert pieces[0].offset == 0 and pieces[-1].end == image.size
    assert all(a.end == b.offset for a, b in itertools.pairwise(pieces))
    assert sum(p.length for p in pieces if p.data) == image.data_bytes
    split = list(split_zeros(0, b"x" * 10 + bytes(8192 - 10) + bytes(4096) + b"y"))
    assert [(p.offset, p.length, p.data is None) for p in split] == [
        (0, 4096, False), (4096, 8192, True), (12288, 1, False)]


def test_zst_to_file_with_config(image: SmallImage, target: Path, tmp_path: Path) -> None:
    subprocess.run(["zstd", "-q", str(image.path), "-o", f"{image.path}.zst"], check=True)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pi-7\nk3os:\n  password: pw\n")
    r = osb("flash", f"{image.path}.zst", str(target), "--config", str(cfg), "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{target}: flashed and verified\n"
    assert "writing image:" in r.stderr and "verifying" in r.stderr
    assert f"wrote {image.data_bytes / 1e6:.1f} MB" in r.stderr
    got, want = target.read_bytes(), image.path.read_bytes()
    boot = partitions(target)[1][0]
    assert got[:boot.start] == want[:boot.start]
    assert got[image.data.start:image.size] == want[image.data.start:image.size]
    assert fat_read(target, boot, "config.yaml") == cfg.read_bytes()
    assert fat_read(target, boot, "cmdline.txt") == b"quiet\n"


def test_force_makes_a_new_file_target(image: SmallImage, tmp_path: Path) -> None:
    new = tmp_path / "vm-disk.img"
    r = osb("flash", str(image.path), str(new), "--force")
    assert r.returncode == 0, r.stderr
    assert new.read_bytes() == image.path.read_bytes()  # a new file's holes are zeros
    r = osb("flash", str(image.path), "/dev/osb-test-nonexistent", "--force")
    assert r.returncode == ExitCode.BAD_INPUT and "no such device" in r.stderr
    assert not Path("/dev/osb-test-nonexistent").exists()


def test_regular_file_target_needs_force(image: SmallImage, target: Path) -> None:
    before = target.read_bytes()
    r = osb("flash", str(image.path), str(target))
    assert r.returncode == ExitCode.BAD_INPUT
    assert "is a regular file, not a block device: pass --force" in r.stderr
    assert target.read_bytes() == before


@pytest.mark.parametrize("what", ["yaml", "truncated", "foreign-gpt"])
def test_not_an_osbuilder_image_is_refused_before_the_target(
        what: str, image: SmallImage, target: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.img"
    if what == "yaml":
        bad.write_text("hostname: not-an-image\n" * 3000)
        why = "not an osbuilder disk image: no partition table"
    elif what == "truncated":
        bad.write_bytes(image.path.read_bytes()[:image.data.start])
        why = "the image is cut short"
    else:
        bad.write_bytes(image.path.read_bytes())
        subprocess.run(["sfdisk", "-q", "--part-label", str(bad), "2", "rootfs"], check=True)
        why = "its GPT partitions are named OSB_BOOT, rootfs, OSB_ROOT_B, OSB_DATA"
    before = target.read_bytes()
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: x\n")
    r = osb("flash", str(bad), str(target), "--force", "--config", str(cfg))
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr
    assert why in r.stderr and "Traceback" not in r.stderr
    assert target.read_bytes() == before


def test_bad_config_is_refused_before_writing(image: SmallImage, target: Path,
                                              tmp_path: Path) -> None:
    before = target.read_bytes()
    cfg = tmp_path / "node.yaml"
    cfg.write_text("k3os:\n  labels: [red]\n")
    r = osb("flash", str(image.path), str(target), "--config", str(cfg), "--force")
    assert r.returncode == ExitCode.BAD_INPUT
    assert "k3os.labels" in r.stderr and "expected object" in r.stderr
    assert target.read_bytes() == before


def test_corrupted_write_is_caught_by_read_back(image: SmallImage, target: Path,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A medium that silently stores one wrong byte in slot A's second data piece."""
    real = writer.Target.write
    bad_at = image.slot_a.start + 2 * MIB

    def flaky(self: writer.Target, offset: int, data: bytes) -> None:
        if offset == bad_at:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        real(self, offset, data)

    monkeypatch.setattr(writer.Target, "write", flaky)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: x\n")
    with pytest.raises(OsbError, match=rf"verification failed: {target} differs from the "
                                       rf"image in bytes {bad_at}\.\.{bad_at + MIB // 2 - 1}"):
        flash(image.path, target, Progress(io.StringIO()), cfg, force=True)
    boot = partitions(target)[1][0]  # no config on a card that failed verification
    r = subprocess.run(["mdir", "-i", f"{target}@@{boot.start}", "-b", "::/"],
                       capture_output=True, text=True)
    assert "config.yaml" not in r.stdout and "cmdline.txt" in r.stdout


def test_image_larger_than_device_is_refused(image: SmallImage, target: Path) -> None:
    table = read_table(image.path.read_bytes()[:MIB], image.size)
    pieces = iter([Piece(0, MIB, b"\1" * MIB), Piece(MIB, MIB, b"\1" * MIB)])
    fd = os.open(target, os.O_WRONLY)
    try:
        with pytest.raises(OsbError, match="the image is larger than the target"):
            writer.write_pieces(pieces, table, writer.Target(fd), Progress(io.StringIO()),
                                None, MIB)
    finally:
        os.close(fd)


def test_broken_zst_fails_clearly(image: SmallImage, target: Path) -> None:
    zst = Path(f"{image.path}.zst")
    subprocess.run(["zstd", "-q", str(image.path), "-o", str(zst)], check=True)
    whole = zst.read_bytes()
    before = target.read_bytes()
    zst.write_bytes(whole[: len(whole) // 2])
    r = osb("flash", str(zst), str(target), "--force")
    assert r.returncode == ExitCode.BAD_INPUT
    assert f"IMAGE {zst}: not a readable zstd file" in r.stderr
    assert target.read_bytes() == before
    # frame headers intact, data corrupt: found while decompressing (checksum)
    mid = len(whole) // 2
    zst.write_bytes(whole[:mid] + bytes(b ^ 0x55 for b in whole[mid:mid + 64])
                    + whole[mid + 64:])
    r = osb("flash", str(zst), str(target), "--force")
    assert r.returncode == ExitCode.EXTERNAL
    assert "command failed" in r.stderr and "zstd -dc" in r.stderr, r.stderr


def test_config_onto_an_mbr_card(tmp_path: Path) -> None:
    img = small_image(tmp_path / "pi.img", "mbr")
    target = tmp_path / "card.bin"
    target.write_bytes(USED * img.size)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pi-2\n")
    res = flash(img.path, target, Progress(io.StringIO()), cfg, force=True)
    assert res.config_offset == MIB
    boot = partitions(target)[1][0]
    assert fat_read(target, boot, "config.yaml") == b"hostname: pi-2\n"
    assert set(target.read_bytes()[img.slot_b.start:img.slot_b.end]) == set(USED)
