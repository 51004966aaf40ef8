"""The U-Boot A/B boot script under Debian's own U-Boot for QEMU (u-boot-qemu, qemu_arm64),
on a loop-free disk image whose boot partition holds only what the script reads: it picks
slot A, counts the try down in uboot.env, and with BOOT_A_LEFT=0 picks slot B — the
script itself, run by a real U-Boot. The kernels are placeholders: U-Boot refuses them,
and the script then resets the board (a slot that does not start costs its try), where
the test stops."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from osbuilder.bootloaders.uboot.build import boot_script, compile_script
from osbuilder.bootloaders.uboot.env_file import ENV_COPY, ENV_FILE, env_blob, parse_env
from osbuilder.shared.verity import Verity

pytestmark = pytest.mark.e2e

UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
PART_START = 1 << 20
TOOLS = ("qemu-system-aarch64", "mkimage", "mcopy", "mkfs.vfat", "sfdisk", "fw_printenv")


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not UBOOT.is_file():
        pytest.skip(f"missing {', '.join(missing) or UBOOT} (make deps: qemu-system-arm, "
                    "u-boot-qemu, u-boot-tools, libubootenv-tool)")
    compile_script(boot_script("console=ttyAMA0 osb.slot=${osb_slot} ${osb_rootargs}"),
                   tmp_path / "boot.scr")
    fat = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-C", str(fat), str(60 << 10)], check=True,
                   capture_output=True)
    for d in ("osb", "osb/a", "osb/b"):
        subprocess.run(["mmd", "-i", str(fat), f"::/{d}"], check=True)
    for slot in "ab":
        (tmp_path / f"k{slot}").write_text(f"placeholder kernel {slot}\n")
        for name in ("vmlinuz", "initrd.img"):
            subprocess.run(["mcopy", "-i", str(fat), str(tmp_path / f"k{slot}"),
                            f"::/osb/{slot}/{name}"], check=True)
    subprocess.run(["mcopy", "-i", str(fat), str(tmp_path / "boot.scr"), "::/boot.scr"],
                   check=True)
    img = tmp_path / "disk.img"
    with img.open("wb") as f:
        f.truncate(PART_START + fat.stat().st_size)
    subprocess.run(["sfdisk", "-q", str(img)], input="label: dos\nstart=2048, type=c\n",
                   text=True, check=True)
    with img.open("r+b") as f:
        f.seek(PART_START)
        f.write(fat.read_bytes())
    return img


def put_env(img: Path, tmp: Path, env: dict[str, str], name: str = ENV_FILE,
            torn: bool = False) -> None:
    blob = bytearray(env_blob(env))
    if torn:  # a power cut in the middle of a write: the CRC no longer matches
        blob[100:] = bytes(len(blob) - 100)
    (tmp / "env.bin").write_bytes(blob)
    subprocess.run(["mcopy", "-o", "-i", f"{img}@@{PART_START}", str(tmp / "env.bin"),
                    f"::/{name}"], check=True)


def get_env(img: Path, tmp: Path, name: str = ENV_FILE) -> dict[str, str]:
    subprocess.run(["mcopy", "-o", "-i", f"{img}@@{PART_START}", f"::/{name}",
                    str(tmp / "out.bin")], check=True)
    return parse_env((tmp / "out.bin").read_bytes())


def boot_until_slot(img: Path, log: Path, timeout: float = 120) -> str:
    proc = subprocess.Popen(
        ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-accel", "tcg",
         "-bios", str(UBOOT), "-drive", f"if=none,file={img},format=raw,id=d",
         "-device", "virtio-blk-device,drive=d", "-display", "none", "-monitor", "none",
         "-nic", "none", "-serial", f"file:{log}"])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "did not start, resetting" in text:  # the script ran past its booti
                assert "Bad Linux ARM64 Image magic" in text, text
                for line in text.splitlines():
                    if line.startswith("osbuilder: booting slot"):
                        return line
                raise AssertionError(f"booti without the script's slot line:\n{text}")
            time.sleep(0.5)
        raise AssertionError(f"U-Boot did not reach the kernel in {timeout} s:\n"
                             f"{log.read_text(errors='replace')[-2000:]}")
    finally:
        proc.kill()
        proc.wait()


def test_script_boots_a_then_b_when_a_has_no_tries(disk: Path, tmp_path: Path) -> None:
    put_env(disk, tmp_path, {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"})
    line = boot_until_slot(disk, tmp_path / "boot1.log")
    assert line == "osbuilder: booting slot a (A left 2, B left 0)"
    assert get_env(disk, tmp_path) == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2",
                                       "BOOT_B_LEFT": "0", "BOOT_A_OK": "0", "BOOT_B_OK": "0"}
    # what RAUC's uboot backend does on the node after installing B, via fw_setenv
    (tmp_path / "fw_env.config").write_text(f"{tmp_path / 'node-env.bin'} 0x0 0x4000\n")
    put_env(disk, tmp_path, {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"})
    line = boot_until_slot(disk, tmp_path / "boot2.log")
    assert line == "osbuilder: booting slot b (A left 0, B left 2)"
    env = get_env(disk, tmp_path)
    assert env["BOOT_B_LEFT"] == "2"
    # the same file is what libubootenv (fw_printenv, used by RAUC) reads
    (tmp_path / "node-env.bin").write_bytes((tmp_path / "out.bin").read_bytes())
    out = subprocess.run(["fw_printenv", "-c", str(tmp_path / "fw_env.config")],
                         capture_output=True, text=True, check=True).stdout
    assert "BOOT_B_LEFT=2" in out and "BOOT_ORDER=A B" in out


def test_known_good_slot_boots_without_counting(disk: Path, tmp_path: Path) -> None:
    """What the node's health gate leaves: B known good after an upgrade. It boots first,
    and the script writes nothing (no SD-card write on an ordinary boot)."""
    env = {"BOOT_ORDER": "B A", "BOOT_A_OK": "1", "BOOT_A_LEFT": "3", "BOOT_B_OK": "1",
           "BOOT_B_LEFT": "3", "BOOT_A_VERSION": "1.0.0", "BOOT_B_VERSION": "1.1.0"}
    put_env(disk, tmp_path, env)
    line = boot_until_slot(disk, tmp_path / "boot.log")
    assert line == "osbuilder: booting slot b (A left 3, B left 3)"
    assert get_env(disk, tmp_path) == env


def test_users_kernel_arguments_from_the_text_file(disk: Path, tmp_path: Path) -> None:
    """osbuilder-args.txt, as a user edits it on a laptop (comments, CRLF line ends): its
    OSB_ARGS line lands at the end of the kernel command line."""
    (tmp_path / "args.txt").write_bytes(b"# my args\r\nOSB_ARGS=console=ttyAMA0 x.y=1\r\n")
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{PART_START}", str(tmp_path / "args.txt"),
                    "::/osbuilder-args.txt"], check=True)
    boot_until_slot(disk, tmp_path / "boot.log")
    lines = [line for line in (tmp_path / "boot.log").read_text(errors="replace").splitlines()
             if line.startswith("osbuilder: kernel arguments")]
    assert lines and lines[0].rstrip().endswith("root=PARTUUID=6f736231-02 console=ttyAMA0 "
                                                "x.y=1"), lines


def test_torn_env_file_falls_back_to_its_copy(disk: Path, tmp_path: Path) -> None:
    """A power cut tore osbuilder.env (bad CRC): the script takes the state from its copy
    (B on trial after an upgrade, not the defaults' slot A), and its count-down rewrites
    both files whole."""
    before = {"BOOT_ORDER": "B A", "BOOT_A_OK": "1", "BOOT_A_LEFT": "3", "BOOT_B_OK": "0",
              "BOOT_B_LEFT": "3", "BOOT_A_VERSION": "1.0.0", "BOOT_B_VERSION": "1.1.0"}
    put_env(disk, tmp_path, before, name=ENV_COPY)
    put_env(disk, tmp_path, {**before, "BOOT_B_LEFT": "2"}, torn=True)
    line = boot_until_slot(disk, tmp_path / "boot.log")
    assert line == "osbuilder: booting slot b (A left 3, B left 2)"
    assert f"{ENV_FILE} unreadable" in (tmp_path / "boot.log").read_text(errors="replace")
    after = {**before, "BOOT_B_LEFT": "2"}
    assert get_env(disk, tmp_path) == after and get_env(disk, tmp_path, ENV_COPY) == after


def test_script_starts_over_when_no_slot_has_tries(disk: Path, tmp_path: Path) -> None:
    put_env(disk, tmp_path, {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"})
    line = boot_until_slot(disk, tmp_path / "boot.log")
    assert line == "osbuilder: booting slot a (A left 3, B left 3)"
    assert "no slot has tries left" in (tmp_path / "boot.log").read_text(errors="replace")


def test_slot_root_hash_reaches_the_kernel_arguments(disk: Path, tmp_path: Path) -> None:
    """osb/<slot>/verity.txt, staged with the slot: boot.scr names the verified device as
    root=, the slot's partition as the verity data and adds panic=10, so a root that does
    not match reboots into the next try (local-top/osbuilder-verity panics)."""
    v = Verity("ab" * 32, 8192)
    (tmp_path / "verity.txt").write_text(v.env_text())
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{PART_START}", str(tmp_path / "verity.txt"),
                    "::/osb/a/verity.txt"], check=True)
    boot_until_slot(disk, tmp_path / "boot.log")
    lines = [line for line in (tmp_path / "boot.log").read_text(errors="replace").splitlines()
             if line.startswith("osbuilder: kernel arguments")]
    assert lines and lines[0].split()[3:] == [
        "console=ttyAMA0", "osb.slot=a", "root=/dev/mapper/osb-root",
        "osb.verity_data=PARTUUID=6f736231-02", f"osb.verity={'ab' * 32}",
        "osb.verity_offset=8192", "panic=10"], lines
