"""The U-Boot slot chooser on a temp boot partition: the state machine RAUC drives on a
node. `boot_attempt` models what boot.scr does at power-on; tests/e2e/
test_uboot_ab_qemu_arm64.py runs the real script under U-Boot on the same env file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from osbuilder.bootloaders.uboot.chooser import Chooser as UBootChooser
from osbuilder.bootloaders.uboot.env_file import (
    ENV_COPY,
    ENV_FILE,
    ENV_FILES,
    env_blob,
    initial_env,
    parse_env,
)
from osbuilder.shared.errors import OsbError

DTBS = ("broadcom/bcm2837-rpi-3-b.dtb", "broadcom/bcm2711-rpi-4-b.dtb")
KVER = "6.12.0-1-arm64"


def slot_root(tmp: Path, slot: str, version: str) -> Path:
    root = tmp / f"root-{slot}"
    for rel, data in ((f"boot/vmlinuz-{KVER}", f"kernel {version}"),
                      (f"boot/initrd.img-{KVER}", f"initrd {version}"),
                      ("usr/lib/os-release", f'ID=osbuilder\nIMAGE_VERSION="{version}"\n'),
                      *((f"usr/lib/linux-image-{KVER}/{d}", f"{d} {version}") for d in DTBS),
                      (f"usr/lib/linux-image-{KVER}/broadcom/other.dtb", "not on this board")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(data)
    return root


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A fresh rpi-arm64 boot partition: slot A 1.0.0 known good, B empty."""
    boot = tmp_path / "boot"
    for d in DTBS:
        (boot / "osb/a" / d).parent.mkdir(parents=True, exist_ok=True)
        (boot / "osb/a" / d).write_text(f"{d} 1.0.0")
    put(boot, initial_env("a", "1.0.0"))
    return boot


def put(boot: Path, e: dict[str, str]) -> None:
    """What the build and boot.scr write: the file, then its copy."""
    for name in ENV_FILES:
        (boot / name).write_bytes(env_blob(e))


def chooser(boot: Path, tmp: Path, booted: str = "a",
            versions: dict[str, str] | None = None) -> UBootChooser:
    roots = {s: slot_root(tmp / booted, s, v)
             for s, v in (versions or {"a": "1.0.0", "b": "1.1.0"}).items()}

    @contextmanager
    def mount(slot: str) -> Iterator[Path]:
        yield roots[slot]

    return UBootChooser(boot, booted, mount)


def env(boot: Path) -> dict[str, str]:
    return parse_env((boot / ENV_FILE).read_bytes())


def boot_attempt(boot: Path) -> str:
    """boot.scr's choice: first of BOOT_ORDER that is OK (no count) or has tries (count one
    down, write back); none: reset both counters and boot A."""
    e = env(boot)
    for name in e["BOOT_ORDER"].split():
        if e.get(f"BOOT_{name}_OK") == "1":
            return name.lower()
        if int(e[f"BOOT_{name}_LEFT"]) > 0:
            e[f"BOOT_{name}_LEFT"] = str(int(e[f"BOOT_{name}_LEFT"]) - 1)
            put(boot, e)
            return name.lower()
    e["BOOT_A_LEFT"] = e["BOOT_B_LEFT"] = "3"
    put(boot, e)
    return "a"


def test_fresh_image_boots_a_and_b_is_empty(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    assert ch.primary() == "a" and ch.state("a") == "good" and ch.tries_left("a") is None
    assert ch.state("b") == "bad" and ch.version("a") == "1.0.0" and ch.version("b") is None
    assert boot_attempt(boot) == "a" and env(boot) == initial_env("a", "1.0.0")  # no write


def test_install_flow_stages_files_flips_to_b_then_bless(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    ch.set_state("b", False)  # RAUC: target bad before writing it
    ch.set_primary("b")
    assert (boot / "osb/b/vmlinuz").read_text() == "kernel 1.1.0"
    assert (boot / "osb/b/initrd.img").read_text() == "initrd 1.1.0"
    # the board's device trees, as the booted slot has them; nothing else
    assert sorted(str(p.relative_to(boot / "osb/b")) for p in (boot / "osb/b").rglob("*.dtb")) \
        == sorted(DTBS)
    assert (boot / "osb/b/broadcom/bcm2711-rpi-4-b.dtb").read_text().endswith("1.1.0")
    e = env(boot)
    assert (e["BOOT_ORDER"], e["BOOT_B_OK"], e["BOOT_B_LEFT"], e["BOOT_B_VERSION"]) == \
        ("B A", "0", "3", "1.1.0")
    assert ch.primary() == "b" and ch.tries_left("b") == 3
    assert boot_attempt(boot) == "b"
    on_b = chooser(boot, tmp_path, booted="b")
    assert on_b.tries_left("b") == 2  # on trial: the health gate runs
    on_b.set_state("b", True)
    assert on_b.tries_left("b") is None and env(boot)["BOOT_B_OK"] == "1"
    assert [boot_attempt(boot) for _ in range(5)] == ["b"] * 5  # no counting once good


def test_state_files_are_rewritten_in_place(boot: Path, tmp_path: Path) -> None:
    """No rename on FAT for the state: same file (inode), same size, new content; a rename
    frees and allocates clusters in writes a power cut can split."""
    inodes = {n: (boot / n).stat().st_ino for n in ENV_FILES}
    chooser(boot, tmp_path).set_state("b", False)
    assert {n: (boot / n).stat().st_ino for n in ENV_FILES} == inodes
    assert env(boot)["BOOT_B_LEFT"] == "0" and not list(boot.glob(".*"))
    (boot / ENV_COPY).unlink()  # an image from before the copy: made once, whole
    chooser(boot, tmp_path).set_state("b", False)
    assert parse_env((boot / ENV_COPY).read_bytes()) == env(boot)


def test_tries_run_out_then_a_boots_again(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    ch.set_state("b", False)
    ch.set_primary("b")
    assert [boot_attempt(boot) for _ in range(5)] == ["b", "b", "b", "a", "a"]
    assert ch.state("b") == "bad" and ch.primary() == "a"


def test_gate_failure_marks_bad_and_next_boot_is_a(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    ch.set_state("b", False)
    ch.set_primary("b")
    boot_attempt(boot)
    chooser(boot, tmp_path, booted="b").set_state("b", False)
    assert boot_attempt(boot) == "a" and ch.state("b") == "bad"


def test_rollback_to_known_good_a_keeps_it_good(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    ch.set_state("b", False)
    ch.set_primary("b")
    boot_attempt(boot)
    on_b = chooser(boot, tmp_path, booted="b")
    on_b.set_state("b", True)
    on_b.set_primary("a")  # `osbuilder-agent rollback`
    assert env(boot)["BOOT_ORDER"] == "A B" and on_b.tries_left("a") is None
    assert boot_attempt(boot) == "a"


def test_slot_without_osbuilder_root_changes_nothing(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    (tmp_path / "a/root-b/boot/vmlinuz-6.12.0-1-arm64").unlink()
    before = (boot / ENV_FILE).read_bytes()
    with pytest.raises(OsbError, match="expected one kernel in /boot, found 0"):
        ch.set_primary("b")
    assert (boot / ENV_FILE).read_bytes() == before


def tear(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[20] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_torn_env_file_reads_the_copy_and_the_next_write_mends_it(boot: Path,
                                                                   tmp_path: Path) -> None:
    """A power cut in boot.scr's in-place write of osbuilder.env: the copy holds the state
    before it, as boot.scr also reads it; the chooser's next change rewrites both."""
    ch = chooser(boot, tmp_path)
    ch.set_state("b", False)
    ch.set_primary("b")
    tear(boot / ENV_FILE)
    assert ch.primary() == "b" and ch.tries_left("b") == 3
    chooser(boot, tmp_path, booted="b").set_state("b", True)
    assert env(boot) == parse_env((boot / ENV_COPY).read_bytes())
    assert env(boot)["BOOT_B_OK"] == "1"


def test_missing_or_torn_env_is_a_clear_error(boot: Path, tmp_path: Path) -> None:
    ch = chooser(boot, tmp_path)
    for name in ENV_FILES:
        tear(boot / name)
    with pytest.raises(OsbError, match="bad CRC"):
        ch.primary()
    (boot / ENV_FILE).unlink()
    with pytest.raises(OsbError, match=r"osbuilder\.env missing"):
        ch.state("a")
